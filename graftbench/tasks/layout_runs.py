"""The layout task's runs: sampling, the evaluator, and the verbs the workflow calls
(train_features, pretrain, evaluate_base, finetune); configs and data in `tasks.layout`."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from graftbench import records
from graftbench.config import InputError, to_dict
from graftbench.distributed import is_writer
from graftbench.layout import data as layout_data
from graftbench.tasks.layout import (
    LayoutConfig,
    LayoutEvaluateConfig,
    as_layouts,
    condition_mask,
    diversity,
    finetune_conditions,
    heldout_layouts,
    layout_metrics,
    load_split,
    padded,
    reward_fn,
)

# --------------------------------------------------------------------------------- sampling


@torch.no_grad()
def sample_boxes(
    segments, model, conditions: list, ev: LayoutEvaluateConfig, seed: int
) -> np.ndarray:
    """Boxes (n, L, 4) in page units for class sequences `conditions` from the evaluation
    sampler; segments as in `loop.sample_segments`."""
    from graftbench.methods.loop import LoopConfig, sample_segments

    device = next(model.network.parameters()).device
    loop = LoopConfig(num_steps=ev.num_steps, eta=ev.eta, sample_batch=ev.batch_size)
    g = torch.Generator(device=device).manual_seed(seed)
    roll = sample_segments(
        model, segments, model.scheduler("ddim"), list(conditions), loop, g, keep={ev.num_steps}
    )
    return model.decode(roll.final).cpu().numpy()


class Evaluator:
    """Scores a model's samples on the held-out conditions (reward, alignment, overlap,
    maximum IoU and FID against the test layouts) and the fine-tuning conditions (training
    reward, diversity). Loads the data and the FID network once."""

    def __init__(self, cfg: LayoutConfig, data_dir: Path, features: Path):
        from graftbench.layout.features import LayoutFeatureNet

        self.cfg = cfg
        self.held = heldout_layouts(cfg, load_split(data_dir, "test"))
        self.held_conditions = [layout_data.condition(x) for x in self.held]
        k = cfg.evaluate.train_samples
        self.train_conditions = [
            c for c in finetune_conditions(cfg, load_split(data_dir, "train")) for _ in range(k)
        ]
        ckpt = records.load_checkpoint(features)
        self.net = LayoutFeatureNet(cfg.features, cfg.data.max_elements)
        self.net.load_state_dict(ckpt["model"])
        self.ref = self.features(self.held)

    def features(self, layouts: list) -> np.ndarray:
        from graftbench.layout.features import extract

        return extract(self.net, *padded(layouts, self.cfg))

    def __call__(self, segments, model, seed: int) -> tuple[dict, np.ndarray]:
        """Metrics and the sampled boxes (held-out first, then training conditions)."""
        from graftbench.layout import metrics
        from graftbench.metrics.fid import fid

        cfg, ev = self.cfg, self.cfg.evaluate
        conds = self.held_conditions + self.train_conditions
        boxes = sample_boxes(segments, model, conds, ev, seed + ev.seed_offset)
        nh = len(self.held)
        gen = as_layouts(boxes[:nh], self.held_conditions)
        out = {
            **layout_metrics(gen, cfg, "heldout_"),
            **layout_metrics(as_layouts(boxes[nh:], self.train_conditions), cfg, "train_"),
            "max_iou": metrics.max_iou(gen, self.held),
            "fid": fid(self.features(gen), self.ref),
            "diversity": diversity(boxes[nh:], self.train_conditions, ev.train_samples),
            "n_heldout": nh,
            "n_train_conditions": len(self.train_conditions) // ev.train_samples,
            "train_samples": ev.train_samples,
        }
        return out, boxes

    def curve(self, segments, model, seed: int) -> float:
        """Mean reward on the first `curve_conditions` held-out conditions."""
        ev = self.cfg.evaluate
        conds = self.held_conditions[: ev.curve_conditions]
        boxes = sample_boxes(segments, model, conds, ev, seed + ev.seed_offset)
        return layout_metrics(as_layouts(boxes, conds), self.cfg)["reward"]


def flops_per_call(model) -> int:
    """FLOPs of one denoiser evaluation for one layout (torch's counter)."""
    from graftbench.flops import count_flops

    x = torch.zeros((1, *model.sample_shape), device=model.device)
    cond = model.encode_condition([("text",)])
    return count_flops(
        lambda: model.denoise(x, torch.zeros(1, dtype=torch.long, device=model.device), cond)
    )


# ------------------------------------------------------------------------------------ verbs


def train_features(
    cfg: LayoutConfig, data_dir: Path, out: Path, log: Path | None = None, device: str = "cpu"
) -> dict:
    """Train the layout-FID network on the training layouts on `device`; record the FID
    between training and test layouts (the floor a perfect model would reach, up to sample
    size)."""
    from graftbench.layout.features import LayoutFeatureNet, extract, feature_loss
    from graftbench.metrics.fid import fid
    from graftbench.train import fit

    torch.manual_seed(cfg.features.train.seed)
    train, test = load_split(data_dir, "train"), load_split(data_dir, "test")
    net = LayoutFeatureNet(cfg.features, cfg.data.max_elements).to(device)  # CPU init, then moved
    fit(
        net,
        feature_loss(net, *padded(train, cfg), cfg.features),
        cfg.features.train,
        out,
        to_dict(cfg),
        log,
    )
    net.load_state_dict(records.load_checkpoint(out)["model"])
    held = heldout_layouts(cfg, test)
    n = len(held)
    summary = {
        "fid_train_vs_test": fid(
            extract(net, *padded(train[:n], cfg)), extract(net, *padded(held, cfg))
        ),
        "n": n,
        "device": device,
    }
    records.write_json(out.with_suffix(".json"), summary)
    return summary


def pretrain(
    cfg: LayoutConfig, data_dir: Path, out: Path, log: Path | None = None, device: str = "cpu"
) -> None:
    """Pre-train the base on the training layouts with the DDPM denoising loss, on `device`."""
    from graftbench.layout.model import LayoutAdapter
    from graftbench.losses import denoising_loss
    from graftbench.train import fit

    torch.manual_seed(cfg.pretrain.seed)
    model = LayoutAdapter(cfg.model)  # initialised on the CPU, then moved
    model.network.to(device)
    boxes, classes, mask = padded(load_split(data_dir, "train"), cfg)
    x0 = LayoutAdapter.encode_boxes(torch.from_numpy(boxes), torch.from_numpy(mask))
    classes = torch.from_numpy(classes)

    def loss_fn(step: int, g: torch.Generator) -> torch.Tensor:
        idx = torch.randint(len(x0), (cfg.pretrain.batch_size,), generator=g)
        # the loss draws t and noise on fit's CPU generator and moves them to x0's device
        return denoising_loss(model, x0[idx].to(device), classes[idx].to(device), g)

    fit(model.network, loss_fn, cfg.pretrain, out, to_dict(cfg), log)


def _write_run(out: Path, metrics: dict, ev: dict, boxes: np.ndarray, evaluator: Evaluator) -> None:
    from graftbench.layout.render import grid

    with records.atomic_path(out / "boxes.npz") as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, boxes=boxes)
    gen = as_layouts(boxes[: len(evaluator.held)], evaluator.held_conditions)
    layout_data.write_json(gen, out / "samples.json")
    with records.atomic_path(out / "grid.png") as tmp:
        from PIL import Image

        Image.fromarray(grid(gen[:32], ncol=8)).save(tmp, format="png")
    records.write_json(out / "config.json", to_dict(evaluator.cfg))
    records.write_json(out / "eval.json", ev)
    records.write_json(out / "metrics.json", metrics)  # last: its presence marks a finished run


def evaluate_base(
    cfg: LayoutConfig,
    model_path: Path,
    data_dir: Path,
    features: Path,
    seed: int,
    out: Path,
    device: str = "cpu",
) -> dict:
    """The pre-trained model, evaluated as every fine-tuned one is."""
    from graftbench.layout.model import LayoutAdapter
    from graftbench.tasks.finetuning import base_record, plain_factory

    t0 = time.perf_counter()
    model = LayoutAdapter.load(model_path, device)
    evaluator = Evaluator(cfg, data_dir, features)
    segments = [(plain_factory(model), None)]
    ev, boxes = evaluator(segments, model, seed)
    ev["curve_reward"] = evaluator.curve(segments, model, seed)
    ev["drift"] = 0.0  # the reference the fine-tuned runs' drift is measured from
    metrics = base_record(seed, flops_per_call(model), t0, device)
    _write_run(out, metrics, ev, boxes, evaluator)
    return {**metrics, **ev}


def finetune(
    cfg: LayoutConfig,
    model_path: Path,
    data_dir: Path,
    features: Path,
    run: str,
    seed: int,
    base_boxes: Path,
    out: Path,
    device: str = "cpu",
) -> dict:
    """Fine-tune the pre-trained model with one method on the fine-tuning conditions until
    the reward budget is spent (a held-out curve point every `evaluate.curve_every` rounds);
    then evaluate it, and its drift from the base on the same evaluation noise."""
    from graftbench.layout.model import LayoutAdapter
    from graftbench.tasks.finetuning import (
        build_method,
        eval_segments,
        finish,
        run_record,
        run_with_curve,
    )

    t0 = time.perf_counter()
    model = LayoutAdapter.load(model_path, device)
    evaluator = Evaluator(cfg, data_dir, features)
    method = build_method(cfg, "layout", run, model, seed)
    segments, n_i = eval_segments(method, model)
    conditions = finetune_conditions(cfg, load_split(data_dir, "train"))
    rows = run_with_curve(
        method,
        conditions,
        reward_fn(cfg.reward),
        lambda: evaluator.curve(segments, model, seed),
        cfg.evaluate.curve_every,
        out,
    )
    if not is_writer():  # the other ranks' models equal rank 0's: it evaluates, writes
        return {}
    train_s = time.perf_counter() - t0
    ev, boxes = evaluator(segments, model, seed)
    base = np.load(base_boxes)["boxes"]
    if base.shape != boxes.shape:
        raise InputError(
            f"{base_boxes}: base boxes {base.shape} do not match this run's "
            f"{boxes.shape}; rerun the base evaluation"
        )
    mask = condition_mask(evaluator.held_conditions + evaluator.train_conditions, boxes.shape[1])
    ev["drift"] = float(np.sqrt(((boxes - base) ** 2)[mask].mean()))
    ev["curve_reward"] = rows[-1]["curve_reward"]
    metrics = run_record(rows, run, seed, n_i, flops_per_call(model), 1, t0, train_s, device)
    model.save(out / "model.pt", to_dict(cfg))
    _write_run(out, metrics, ev, boxes, evaluator)
    finish(out)
    return {**metrics, **ev}
