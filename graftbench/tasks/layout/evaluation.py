"""The layout task's side of a fine-tuning run (`finetuning.task.Session`): the fine-tuning
conditions and aesthetic reward, the evaluation on held-out and fine-tuning conditions
(reward, alignment, overlap, maximum IoU and layout FID against the test layouts), the drift
from the base run, and the files. Evaluation is deterministic DDIM with the same noise per
seed for every method."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from graftbench import records
from graftbench.config import InputError
from graftbench.finetuning.build import sample_final
from graftbench.finetuning.task import Evaluation, base_samples
from graftbench.tasks.layout import data as layout_data
from graftbench.tasks.layout import files as layout_files
from graftbench.tasks.layout.config import LayoutConfig, LayoutEvaluateConfig
from graftbench.tasks.layout.metrics import RewardConfig
from graftbench.tasks.layout.splits import (
    finetune_conditions,
    heldout_layouts,
    layout_metrics,
    load_split,
    padded,
)


def condition_mask(conditions, length: int) -> np.ndarray:
    """(batch, length) bool: True at the elements each class sequence has."""
    return np.arange(length) < np.array([len(c) for c in conditions])[:, None]


def reward_fn(cfg: RewardConfig):
    """The loop's reward: (boxes (batch, L, 4) from model.decode, class-name sequences) ->
    (batch,) `metrics.reward`, elements past each sequence's length masked out."""
    from graftbench.tasks.layout import metrics

    def reward(boxes: torch.Tensor, conditions) -> np.ndarray:
        mask = condition_mask(conditions, boxes.shape[1])
        return metrics.reward(boxes.detach().cpu().double().numpy(), mask, cfg)

    return reward


def as_layouts(boxes: np.ndarray, conditions: list[tuple[str, ...]]) -> list:
    """Sampled boxes (n, L, 4) page units + class sequences -> Layouts (PAD positions cut)."""
    from graftbench.tasks.layout.data import CLASSES, Layout

    return [
        Layout(
            np.array([CLASSES.index(n) for n in c], dtype=np.int64),
            boxes[i, : len(c)].astype(np.float64),
        )
        for i, c in enumerate(conditions)
    ]


def diversity(boxes: np.ndarray, conditions: list, per_condition: int) -> float:
    """Mean RMS box distance (page units) between the samples of one condition, over all pairs
    and conditions; samples grouped condition-major. 0 for a model that collapses onto one
    layout per condition; NaN with one sample per condition."""
    if per_condition < 2:
        return float("nan")
    d = []
    for g in range(len(conditions) // per_condition):
        n = len(conditions[g * per_condition])
        group = boxes[g * per_condition : (g + 1) * per_condition, :n]
        d += [
            np.sqrt(((group[i] - group[j]) ** 2).mean())
            for i in range(per_condition)
            for j in range(i + 1, per_condition)
        ]
    return float(np.mean(d))


def sample_boxes(
    segments,
    model,
    conditions: list,
    ev: LayoutEvaluateConfig,
    seed: int,
    best_of: int = 1,
    reward=None,
) -> np.ndarray:
    """Boxes (n, L, 4) in page units for class sequences `conditions` from the evaluation
    sampler (best_of, reward: the best of that many draws by `reward`, as `sample_final`)."""
    final = sample_final(
        model,
        segments,
        list(conditions),
        num_steps=ev.num_steps,
        eta=ev.eta,
        batch=ev.batch_size,
        seed=seed,
        best_of=best_of,
        reward=reward,
        conditions=list(conditions),
    )
    with torch.no_grad():
        return model.decode(final).cpu().numpy()


@dataclass
class LayoutEvaluation(Evaluation):
    boxes: np.ndarray | None = None  # (n, L, 4) page units: held-out first, then training


class LayoutSession:
    """One layout run: the data and the layout-FID network, loaded once."""

    evaluator = None
    dedup_key = None

    def __init__(self, cfg: LayoutConfig, data_dir: Path, features: Path, base: Path | None):
        from graftbench.tasks.layout.features import FEATURES_KIND, LayoutFeatureNet

        if base is not None and not (base / "boxes.npz").is_file():
            raise InputError(f"{base / 'boxes.npz'}: missing; run the base evaluation first")
        self.cfg, self.base = cfg, base
        self.held = heldout_layouts(cfg, load_split(data_dir, "test"))
        self.held_conditions = [layout_data.condition(x) for x in self.held]
        self.conditions = finetune_conditions(cfg, load_split(data_dir, "train"))
        k = cfg.evaluate.train_samples
        self.train_conditions = [c for c in self.conditions for _ in range(k)]
        self.net = LayoutFeatureNet(cfg.features, cfg.data.max_elements)
        self.net.load_state_dict(records.load_checkpoint(features, FEATURES_KIND)["model"])
        self.ref = self.features(self.held)

    def features(self, layouts: list) -> np.ndarray:
        from graftbench.tasks.layout.features import extract

        return extract(self.net, *padded(layouts, self.cfg))

    def model_input(self, condition: tuple[str, ...]) -> tuple[str, ...]:
        return condition

    def reward(self):
        return reward_fn(self.cfg.reward)

    def evaluate(self, segments, model, seed: int, best_of: int = 1) -> LayoutEvaluation:
        """Metrics and the sampled boxes (held-out first, then training conditions)."""
        from graftbench.metrics.fid import fid
        from graftbench.tasks.layout import metrics

        cfg, ev = self.cfg, self.cfg.evaluate
        conds = self.held_conditions + self.train_conditions
        boxes = sample_boxes(
            segments, model, conds, ev, seed + ev.seed_offset, best_of, self.reward()
        )
        nh = len(self.held)
        gen = as_layouts(boxes[:nh], self.held_conditions)
        out = {
            **layout_metrics(gen, cfg, "heldout_"),
            **layout_metrics(as_layouts(boxes[nh:], self.train_conditions), cfg, "train_"),
            "max_iou": metrics.max_iou(gen, self.held),
            "fid": fid(self.features(gen), self.ref),
            "diversity": diversity(boxes[nh:], self.train_conditions, ev.train_samples),
            "n_heldout": nh,
            "n_train_conditions": len(self.conditions),
            "train_samples": ev.train_samples,
        }
        return LayoutEvaluation(out, boxes)

    def curve(self, segments, model, seed: int, best_of: int = 1) -> float:
        """Mean reward on the first `curve_conditions` held-out conditions."""
        ev = self.cfg.evaluate
        conds = self.held_conditions[: ev.curve_conditions]
        boxes = sample_boxes(
            segments, model, conds, ev, seed + ev.seed_offset, best_of, self.reward()
        )
        return layout_metrics(as_layouts(boxes, conds), self.cfg)["reward"]

    def compare(self, ev: LayoutEvaluation) -> dict:
        """drift: box RMS (page units) from the base's samples on the same noise, over the
        elements each condition has."""
        if self.base is None:
            return {"drift": 0.0}
        base = base_samples(self.base, "boxes.npz", "boxes", ev.boxes)
        mask = condition_mask(self.held_conditions + self.train_conditions, ev.boxes.shape[1])
        return {"drift": float(np.sqrt(((ev.boxes - base) ** 2)[mask].mean()))}

    def write(self, out: Path, ev: LayoutEvaluation) -> None:
        """boxes.npz, the held-out samples as layout JSON (samples.json) and grid.png."""
        from PIL import Image

        from graftbench.tasks.layout.render import grid

        with records.atomic_path(out / "boxes.npz") as tmp, open(tmp, "wb") as f:
            np.savez_compressed(f, boxes=ev.boxes)
        gen = as_layouts(ev.boxes[: len(self.held)], self.held_conditions)
        layout_files.write_json(gen, out / "samples.json")
        with records.atomic_path(out / "grid.png") as tmp:
            Image.fromarray(grid(gen[:32], ncol=8)).save(tmp, format="png")

    def close(self) -> None:
        pass
