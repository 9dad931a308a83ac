"""The command-line verbs every reward fine-tuning task gets from the shared runner."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from graftbench.config import ConfigError
from graftbench.finetuning.task import FinetuneTask, RunInputs

log = logging.getLogger(__name__)


def inputs(args: argparse.Namespace) -> RunInputs:
    """--data and --features, where given."""
    return RunInputs(
        data=Path(args.data) if args.data else None,
        features=Path(args.features) if args.features else None,
    )


def finetune_verbs(task: FinetuneTask) -> dict:
    """evaluate-model and finetune for `task`, as `tasks.Task.verbs` entries."""
    from graftbench.finetuning import runner

    def evaluate_model(cfg: Any, args: argparse.Namespace) -> None:
        m = runner.evaluate_base(
            task, cfg, Path(args.model), args.seed, Path(args.out), args.device, inputs(args)
        )
        log.info(task.describe(m))

    def finetune(cfg: Any, args: argparse.Namespace) -> None:
        """Under torchrun every rank runs this; rank 0 alone evaluates, writes and prints."""
        from graftbench.distributed import join_ranks

        device = join_ranks(args.device)
        m = runner.finetune(
            task,
            cfg,
            Path(args.model),
            args.run,
            args.seed,
            Path(args.base),
            Path(args.out),
            device,
            inputs(args),
        )
        if m:
            log.info(task.describe(m))

    return {"evaluate-model": evaluate_model, "finetune": finetune}


def aggregate_verb(aggregate, task: str):
    """The aggregate verb of a fine-tuning task whose table module's
    `aggregate(task_dir, table, figures, profile)` writes its table and three figures."""

    def verb(cfg: Any, args: argparse.Namespace) -> None:
        if len(args.figure) != 3:
            raise ConfigError(
                f"--figure: {task} takes three: reward-vs-queries, pgraft-vs-N_I, samples"
            )
        figures = [Path(f) for f in args.figure]
        aggregate(Path(args.results), Path(args.table), figures, args.profile)

    return verb
