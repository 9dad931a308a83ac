"""The layout task's data: the train and test layouts (generated, or the user's COCO files)
written by prepare-data, the conditions fine-tuning draws from and the held-out layouts, and
the reward, alignment and overlap of a set of layouts.

A condition is one layout's class sequence. Fine-tuning draws from `finetune_conditions`
class sequences of training layouts (the same for every method and seed) and its training
reward is scored on exactly those; the held-out metrics use the class sequences of the test
layouts, whose boxes no model has seen.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from graftbench import records
from graftbench.config import InputError
from graftbench.tasks.layout import data as layout_data
from graftbench.tasks.layout import files as layout_files
from graftbench.tasks.layout.config import LayoutConfig


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
        train = layout_files.load_coco(cfg.coco.train, cfg.data.max_elements)
        test = layout_files.load_coco(cfg.coco.test, cfg.data.max_elements)
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
    layout_files.write_json(test, out / "test.json")
    layout_files.write_json(train, out / "train.json")
    summary = {
        "n_train": len(train),
        "n_test": len(test),
        "source": cfg.source,
        "real_test": layout_metrics(test, cfg),
    }
    records.write_json(out / "summary.json", summary)  # last: marks finished data
    return summary


def load_split(data_dir: Path, split: str) -> list:
    return layout_files.read_json(data_dir / f"{split}.json")


def finetune_conditions(cfg: LayoutConfig, train: list) -> list[tuple[str, ...]]:
    """`finetune_conditions` class sequences of distinct training layouts (seeded)."""
    rng = np.random.default_rng(cfg.data.seed + 1)
    idx = rng.choice(len(train), min(cfg.finetune_conditions, len(train)), replace=False)
    return [layout_data.condition(train[i]) for i in sorted(idx)]


def heldout_layouts(cfg: LayoutConfig, test: list) -> list:
    """The test layouts whose class sequences are sampled (the first `heldout_conditions`)."""
    n = cfg.evaluate.heldout_conditions or len(test)
    return test[:n]


def padded(layouts: list, cfg: LayoutConfig):
    return layout_data.pad(layouts, cfg.data.max_elements)


def layout_metrics(layouts: list, cfg: LayoutConfig, prefix: str = "") -> dict:
    """Mean reward, alignment and overlap of layouts (page units)."""
    from graftbench.tasks.layout import metrics

    boxes, _, mask = padded(layouts, cfg)
    return {
        f"{prefix}reward": float(metrics.reward(boxes, mask, cfg.reward).mean()),
        f"{prefix}alignment": float(metrics.alignment(boxes, mask).mean()),
        f"{prefix}overlap": float(metrics.overlap(boxes, mask).mean()),
    }
