"""Class-conditional layout generation: GRAFT, P-GRAFT and DDPO against the base at equal
reward queries, on PubLayNet-like document layouts.

Data flow (one function per workflow rule):
    prepare_data   -> data/train.json, data/test.json (open layout JSON), data/summary.json
    train_features -> features.pt (the layout-FID network), features.json
    pretrain       -> model.pt (EMA weights + config), pretrain.jsonl
    evaluate_base  -> base/seed{n}/: eval.json, metrics.json, samples.json, boxes.npz, grid.png
    finetune       -> {run}/seed{n}/: the same plus rounds.jsonl and model.pt; run is graft,
                      ddpo or pgraft{N_I}
    aggregate      -> tables/layout.{csv,md}; figures layout_reward_vs_queries.png,
                      layout_pgraft_vs_ni.png, layout_samples.png

A condition is one layout's class sequence. Fine-tuning draws from `finetune_conditions`
class sequences of training layouts (the same for every method and seed) and its training
reward is scored on exactly those; the held-out metrics use the class sequences of the test
layouts, whose boxes no model has seen, and compare the samples with those test layouts
(maximum IoU, layout FID). Evaluation is deterministic DDIM with the same noise per seed for
every method; P-GRAFT is evaluated the way it samples (fine-tuned down to t_I, base after).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from graftbench import records
from graftbench.config import ConfigError, InputError
from graftbench.layout import data as layout_data
from graftbench.layout.data import LayoutDataConfig
from graftbench.layout.features import LayoutFeatureConfig
from graftbench.layout.metrics import RewardConfig
from graftbench.layout.model import LayoutModelConfig
from graftbench.methods.ddpo import DDPOConfig
from graftbench.methods.graft import GraftConfig
from graftbench.methods.pgraft import PGraftSweep
from graftbench.methods.selection import SelectionConfig
from graftbench.tasks.finetuning import check_methods, run_names
from graftbench.train import TrainConfig

Method = Literal["base", "graft", "graft_threshold", "pgraft", "ddpo"]


@dataclass
class CocoFiles:
    """PubLayNet (or RICO in COCO form) annotation files the user supplies (paper profile)."""

    train: str = ""  # path to the training annotations, e.g. publaynet/train.json
    test: str = ""  # path to the held-out annotations, e.g. publaynet/val.json
    max_train: int = 0  # keep at most this many training layouts (0 = all)


@dataclass
class LayoutEvaluateConfig:
    num_steps: int = 20  # DDIM steps of the evaluation sampler, every method alike (and
    # P-GRAFT's loop: it switches models at a state index of this grid)
    eta: float = 0.0  # 0: deterministic DDIM, so the same noise gives comparable layouts
    heldout_conditions: int = 1000  # test layouts whose classes are sampled (0 = all)
    train_samples: int = 4  # samples per fine-tuning condition (training reward, diversity)
    batch_size: int = 512  # layouts per sampler call (memory, not maths)
    curve_conditions: int = 200  # held-out conditions scored after fine-tuning rounds
    curve_every: int = 1  # rounds between curve points (the last round always gets one)
    seed_offset: int = 1000  # evaluation noise seed = run seed + this

    def __post_init__(self):
        for key in ("num_steps", "train_samples", "batch_size", "curve_conditions", "curve_every"):
            if getattr(self, key) < 1:
                raise ConfigError(f"layout.evaluate.{key}: {getattr(self, key)} must be at least 1")
        if self.heldout_conditions < 0:
            raise ConfigError(
                f"layout.evaluate.heldout_conditions: {self.heldout_conditions} "
                "must be >= 0 (0 = every test layout)"
            )
        if self.eta < 0:
            raise ConfigError(f"layout.evaluate.eta: {self.eta} must be >= 0")


@dataclass
class LayoutConfig:
    methods: list[Method] = field(
        default_factory=lambda: ["base", "graft", "graft_threshold", "pgraft", "ddpo"]
    )
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])  # fine-tuning + evaluation seeds
    source: Literal["generated", "coco"] = "generated"  # generated: our PubLayNet-like pages;
    # coco: the annotation files under `coco`
    data: LayoutDataConfig = field(default_factory=LayoutDataConfig)  # generator and split
    coco: CocoFiles = field(default_factory=CocoFiles)  # used when source = coco
    finetune_conditions: int = 64  # class sequences of training layouts that fine-tuning
    # draws from (seeded by data.seed; the same for every method and seed) and that the
    # training reward is scored on
    reward: RewardConfig = field(default_factory=RewardConfig)  # the aesthetic reward
    model: LayoutModelConfig = field(default_factory=LayoutModelConfig)  # the base model
    pretrain: TrainConfig = field(default_factory=TrainConfig)  # its pre-training
    features: LayoutFeatureConfig = field(default_factory=LayoutFeatureConfig)  # FID network
    graft: GraftConfig = field(default_factory=GraftConfig)  # loop.seed: replaced by the run's
    graft_threshold: GraftConfig = field(
        default_factory=lambda: GraftConfig(selection=SelectionConfig(rule="threshold", tau=0.5))
    )  # GRAFT with the threshold rule
    pgraft: PGraftSweep = field(default_factory=PGraftSweep)
    ddpo: DDPOConfig = field(default_factory=DDPOConfig)
    evaluate: LayoutEvaluateConfig = field(default_factory=LayoutEvaluateConfig)

    def __post_init__(self):
        if self.finetune_conditions < 1:
            raise ConfigError(
                f"layout.finetune_conditions: {self.finetune_conditions} must be at least 1"
            )
        if self.model.max_elements != self.data.max_elements:
            raise ConfigError(
                f"layout.model.max_elements: {self.model.max_elements} must equal "
                f"layout.data.max_elements ({self.data.max_elements})"
            )
        if self.source == "coco" and not (self.coco.train and self.coco.test):
            raise ConfigError(
                "layout.coco.train and layout.coco.test: source 'coco' needs both "
                "annotation files (COCO-style JSON, e.g. PubLayNet's)"
            )
        check_methods(self, "layout")

    def runs(self) -> list[str]:
        """Run names, in table order: base, graft, pgraft{N_I}..., ddpo."""
        return run_names(self)


# ------------------------------------------------------------------------------------- data


def prepare_data(cfg: LayoutConfig, out: Path) -> dict:
    """Write the train and test layouts (generated, or read from the user's COCO files)."""
    if cfg.source == "coco":
        for key in ("train", "test"):
            if not Path(getattr(cfg.coco, key)).is_file():
                raise InputError(
                    f"layout.coco.{key}: {getattr(cfg.coco, key)} does not exist; source 'coco' "
                    "reads COCO-style layout annotations you supply (PubLayNet's train.json / "
                    "val.json, or RICO converted to COCO form)"
                )
        train = layout_data.load_coco(cfg.coco.train, cfg.data.max_elements)
        test = layout_data.load_coco(cfg.coco.test, cfg.data.max_elements)
        if cfg.coco.max_train:
            train = train[: cfg.coco.max_train]
    else:
        train, test = layout_data.make_splits(cfg.data)
    if not train or not test:
        raise InputError(
            f"layout data: {len(train)} training and {len(test)} test layouts; "
            "both must be non-empty"
        )
    out.mkdir(parents=True, exist_ok=True)
    layout_data.write_json(test, out / "test.json")
    layout_data.write_json(train, out / "train.json")
    summary = {
        "n_train": len(train),
        "n_test": len(test),
        "source": cfg.source,
        "real_test": layout_metrics(test, cfg),
    }
    records.write_json(out / "summary.json", summary)  # last: marks finished data
    return summary


def load_split(data_dir: Path, split: str) -> list:
    return layout_data.read_json(data_dir / f"{split}.json")


def finetune_conditions(cfg: LayoutConfig, train: list) -> list[tuple[str, ...]]:
    """`finetune_conditions` class sequences of distinct training layouts (seeded)."""
    rng = np.random.default_rng(cfg.data.seed + 1)
    idx = rng.choice(len(train), min(cfg.finetune_conditions, len(train)), replace=False)
    return [layout_data.condition(train[i]) for i in sorted(idx)]


def heldout_layouts(cfg: LayoutConfig, test: list) -> list:
    """The test layouts whose class sequences are sampled (the first `heldout_conditions`)."""
    n = cfg.evaluate.heldout_conditions or len(test)
    return test[:n]


# ---------------------------------------------------------------------------------- metrics


def padded(layouts: list, cfg: LayoutConfig):
    return layout_data.pad(layouts, cfg.data.max_elements)


def layout_metrics(layouts: list, cfg: LayoutConfig, prefix: str = "") -> dict:
    """Mean reward, alignment and overlap of layouts (page units)."""
    from graftbench.layout import metrics

    boxes, _, mask = padded(layouts, cfg)
    return {
        f"{prefix}reward": float(metrics.reward(boxes, mask, cfg.reward).mean()),
        f"{prefix}alignment": float(metrics.alignment(boxes, mask).mean()),
        f"{prefix}overlap": float(metrics.overlap(boxes, mask).mean()),
    }


def condition_mask(conditions, length: int) -> np.ndarray:
    """(batch, length) bool: True at the elements each class sequence has."""
    return np.arange(length) < np.array([len(c) for c in conditions])[:, None]


def reward_fn(cfg: RewardConfig):
    """The loop's reward: (boxes (batch, L, 4) from model.decode, class-name sequences) ->
    (batch,) `metrics.reward`, elements past each sequence's length masked out."""
    from graftbench.layout import metrics

    def reward(boxes: torch.Tensor, conditions) -> np.ndarray:
        mask = condition_mask(conditions, boxes.shape[1])
        return metrics.reward(boxes.detach().cpu().double().numpy(), mask, cfg)

    return reward


def as_layouts(boxes: np.ndarray, conditions: list[tuple[str, ...]]) -> list:
    """Sampled boxes (n, L, 4) page units + class sequences -> Layouts (PAD positions cut)."""
    from graftbench.layout.data import CLASSES, Layout

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
