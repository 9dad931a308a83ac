"""Compositional text-to-image: a small Stable-Diffusion-family model pre-trained on rendered
scenes (or Stable Diffusion itself), fine-tuned by GRAFT, P-GRAFT and DDPO at equal reward
queries and scored by a programmatic verifier (or an external scorer such as VQAScore).

config: the typed config; scenes, prompts, prompt_sets, tokenizer: the prompts; model,
model_config, stable_diffusion, pretrain: the model; verifier, judge, scorer: the reward;
evaluation: a fine-tuning run's task side; task: the verbs; table: its table and figures.
"""

from __future__ import annotations

from pathlib import Path

from graftbench.finetuning.verbs import aggregate_verb, finetune_verbs
from graftbench.tasks import Task
from graftbench.tasks.t2i.config import T2IConfig
from graftbench.tasks.t2i.task import T2IFinetune


def _pretrain(cfg: T2IConfig, args) -> None:
    from graftbench.tasks.t2i.task import pretrain

    pretrain(cfg, Path(args.out), Path(args.log) if args.log else None, args.device)


def _aggregate(results: Path, table: Path, figures: list[Path], profile: str) -> None:
    from graftbench.tasks.t2i.table import aggregate

    aggregate(results, table, figures, profile)


EVALUATION_KEYS = (
    "scenes",
    "prompts",
    "finetune_prompts",
    "verifier",
    "scorer",
    "evaluate",
    "model.guidance_scale",
    "stable_diffusion",
)

TASK = Task(
    name="t2i",
    summary="compositional text-to-image (rendered scenes, or Stable Diffusion at paper scale)",
    config=T2IConfig,
    verbs={
        "pretrain": _pretrain,
        **finetune_verbs(T2IFinetune()),
        "aggregate": aggregate_verb(_aggregate, "t2i"),
    },
    finetune=T2IFinetune(),
    config_keys={
        "pretrain": ("scenes", "model", "pretrain", "stable_diffusion"),
        "evaluate": EVALUATION_KEYS,
    },
    hints={
        "prepare-data": "the t2i task renders its scenes as it trains; run pretrain",
        "sample": "the t2i task has no flow sampler; use evaluate-model",
    },
)
