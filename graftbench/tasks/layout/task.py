"""The layout task's verbs: training the layout-FID network, pre-training the box-diffusion
base, and the task as the fine-tuning runner sees it (`LayoutFinetune`).

Data flow (one verb per workflow rule):
    prepare-data   -> data/train.json, data/test.json (open layout JSON), data/summary.json
    train-features -> features.pt (the layout-FID network), features.json
    pretrain       -> model.pt (EMA weights + config), pretrain.jsonl
    evaluate-model -> base/seed{n}/: eval.json, metrics.json, samples.json, boxes.npz, grid.png
    finetune       -> {run}/seed{n}/: the same plus rounds.jsonl and model.pt; run is graft,
                      graft_threshold, ddpo or pgraft{N_I}
    aggregate      -> tables/layout.{csv,md}; figures layout_reward_vs_queries.png,
                      layout_pgraft_vs_ni.png, layout_samples.png
"""

from __future__ import annotations

from pathlib import Path

import torch

from graftbench import records
from graftbench.config import to_dict
from graftbench.finetuning.task import RunInputs
from graftbench.tasks.layout.config import LayoutConfig
from graftbench.tasks.layout.splits import heldout_layouts, load_split, padded


def train_features(
    cfg: LayoutConfig, data_dir: Path, out: Path, log: Path | None = None, device: str = "cpu"
) -> dict:
    """Train the layout-FID network on the training layouts on `device`; record the FID
    between training and test layouts (the floor a perfect model would reach, up to sample
    size)."""
    from graftbench.metrics.fid import fid
    from graftbench.tasks.layout.features import (
        FEATURES_KIND,
        LayoutFeatureNet,
        extract,
        feature_loss,
    )
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
        kind=FEATURES_KIND,
    )
    net.load_state_dict(records.load_checkpoint(out, FEATURES_KIND)["model"])
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
    from graftbench.tasks.layout.model import KIND, LayoutAdapter
    from graftbench.train import fit_model

    torch.manual_seed(cfg.pretrain.seed)
    model = LayoutAdapter(cfg.model)  # initialised on the CPU, then moved
    model.network.to(device)
    boxes, classes, mask = padded(load_split(data_dir, "train"), cfg)
    x0 = LayoutAdapter.encode_boxes(torch.from_numpy(boxes), torch.from_numpy(mask))
    classes = torch.from_numpy(classes)
    fit_model(model, x0, classes, cfg.pretrain, out, to_dict(cfg), log, kind=KIND)


class LayoutFinetune:
    """The layout task as `finetuning.runner` sees it (`finetuning.task.FinetuneTask`)."""

    name = "layout"
    inputs = ("data", "features")
    probe_condition = ("text",)  # one element: FLOPs per call do not depend on the classes

    def load_model(self, path: Path, device: str):
        from graftbench.tasks.layout.model import LayoutAdapter

        return LayoutAdapter.load(path, device)

    def open(self, cfg: LayoutConfig, inputs: RunInputs, out: Path, device: str, base):
        from graftbench.tasks.layout.evaluation import LayoutSession

        return LayoutSession(cfg, inputs.data, inputs.features, base)

    def describe(self, m: dict) -> str:
        return (
            f"{m['run']} seed {m['seed']}: held-out reward {m['heldout_reward']:.3f} "
            f"(alignment {m['heldout_alignment']:.4f}, overlap {m['heldout_overlap']:.4f}, "
            f"max IoU {m['max_iou']:.3f}, FID {m['fid']:.3f}), training reward "
            f"{m['train_reward']:.3f}, {m['reward_queries']} reward queries, {m['wall_s']:.0f} s"
        )
