"""Unconditional molecule generation: a masked discrete diffusion over SELFIES (or SMILES)
tokens pre-trained on QM9 (or MOSES, or a SMILES file you supply), fine-tuned by GRAFT (with
and without de-duplication), P-GRAFT and DDPO at equal reward queries on rdkit's
drug-likeness, QED, SA or validity.

config: the typed config; data, splits, tokens: the molecules; masked, model: the masked
diffusion and its adapter; metrics: rewards, MOSES metrics and FCD; evaluation: a
fine-tuning run's task side; task: the verbs; table: its table and figures.
"""

from __future__ import annotations

import logging
from pathlib import Path

from graftbench.finetuning.verbs import aggregate_verb, finetune_verbs
from graftbench.tasks import Task
from graftbench.tasks.molecule.config import MoleculeConfig
from graftbench.tasks.molecule.task import MoleculeFinetune

log = logging.getLogger(__name__)


def _prepare_data(cfg: MoleculeConfig, args) -> None:
    from graftbench.tasks.molecule.splits import prepare_data

    s = prepare_data(cfg, Path(args.out))
    log.info(
        f"{s['n_train']} training and {s['n_test']} test molecules ({s['source']}; "
        f"{s['n_too_long']} too long for the model left out)"
    )


def _pretrain(cfg: MoleculeConfig, args) -> None:
    from graftbench.tasks.molecule.task import pretrain

    pretrain(
        cfg, Path(args.data), Path(args.out), Path(args.log) if args.log else None, args.device
    )


def _aggregate(results: Path, table: Path, figures: list[Path], profile: str) -> None:
    from graftbench.tasks.molecule.table import aggregate

    aggregate(results, table, figures, profile)


TASK = Task(
    name="molecule",
    summary="unconditional molecules (QM9 or MOSES SMILES, rdkit rewards)",
    config=MoleculeConfig,
    verbs={
        "prepare-data": _prepare_data,
        "pretrain": _pretrain,
        **finetune_verbs(MoleculeFinetune()),
        "aggregate": aggregate_verb(_aggregate, "molecule"),
    },
    finetune=MoleculeFinetune(),
    config_keys={
        "data": ("data", "reward", "evaluate", "model.length", "model.representation"),
        "pretrain": ("data", "model", "pretrain"),
        "evaluate": ("data", "reward", "evaluate"),
    },
    hints={"sample": "the molecule task has no flow sampler; use evaluate-model"},
)
