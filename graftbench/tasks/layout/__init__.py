"""Class-conditional layout generation: a box-diffusion transformer pre-trained on generated
PubLayNet-like pages (or PubLayNet / RICO annotations you supply), fine-tuned by GRAFT (top-K
and threshold rules), P-GRAFT and DDPO at equal reward queries on an aesthetic reward
(alignment and overlap), and evaluated against the test layouts (maximum IoU, layout FID).

config: the typed config; data, splits: the layouts; model: the box-diffusion adapter;
metrics, features, render: the reward, the layout-FID network and drawings; evaluation: a
fine-tuning run's task side; task: the verbs; table: its table and figures.
"""

from __future__ import annotations

import logging
from pathlib import Path

from graftbench.finetuning.verbs import aggregate_verb, finetune_verbs
from graftbench.tasks import Task
from graftbench.tasks.layout.config import LayoutConfig
from graftbench.tasks.layout.task import LayoutFinetune

log = logging.getLogger(__name__)


def _log(args) -> Path | None:
    return Path(args.log) if args.log else None


def _prepare_data(cfg: LayoutConfig, args) -> None:
    from graftbench.tasks.layout.splits import prepare_data

    s = prepare_data(cfg, Path(args.out))
    log.info(f"{s['n_train']} training and {s['n_test']} test layouts ({s['source']})")


def _train_features(cfg: LayoutConfig, args) -> None:
    from graftbench.tasks.layout.task import train_features

    s = train_features(cfg, Path(args.data), Path(args.out), _log(args), args.device)
    log.info(f"layout FID, training vs test layouts ({s['n']} each): {s['fid_train_vs_test']:.4f}")


def _pretrain(cfg: LayoutConfig, args) -> None:
    from graftbench.tasks.layout.task import pretrain

    pretrain(cfg, Path(args.data), Path(args.out), _log(args), args.device)


def _aggregate(results: Path, table: Path, figures: list[Path], profile: str) -> None:
    from graftbench.tasks.layout.table import aggregate

    aggregate(results, table, figures, profile)


DATA_KEYS = ("source", "data", "coco")

TASK = Task(
    name="layout",
    summary="class-conditional document layouts (generated pages, or PubLayNet / RICO files)",
    config=LayoutConfig,
    verbs={
        "prepare-data": _prepare_data,
        "train-features": _train_features,
        "pretrain": _pretrain,
        **finetune_verbs(LayoutFinetune()),
        "aggregate": aggregate_verb(_aggregate, "layout"),
    },
    finetune=LayoutFinetune(),
    config_keys={
        "data": (*DATA_KEYS, "reward"),
        "features": (*DATA_KEYS, "features", "evaluate"),
        "pretrain": (*DATA_KEYS, "model", "pretrain"),
        "evaluate": (*DATA_KEYS, "features", "finetune_conditions", "reward", "evaluate"),
    },
    hints={"sample": "the layout task has no flow sampler; use evaluate-model"},
)
