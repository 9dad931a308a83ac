"""The prompts of the text-to-image task: the training/held-out split (the scene grammar's or a
benchmark prompt set's), the fine-tuning subset and the evaluation's prompt sets."""

from __future__ import annotations

import numpy as np

from graftbench.tasks.t2i.config import T2IConfig
from graftbench.tasks.t2i.scenes import Prompt, split_prompts


def _subset(prompts: list[Prompt], n: int, seed: int) -> list[Prompt]:
    """n prompts drawn without replacement (all if n >= len), in their original order."""
    if n >= len(prompts):
        return list(prompts)
    idx = np.random.default_rng(seed).choice(len(prompts), n, replace=False)
    return [prompts[i] for i in sorted(idx)]


def prompt_split(cfg: T2IConfig) -> tuple[list, list]:
    """(training, held-out) prompts: the scene grammar's split, or the prompt set's. Both kinds
    of prompt have `.text` and `.category`."""
    if cfg.prompts.source == "scenes":
        split = split_prompts(cfg.scenes)
        return list(split.train), list(split.heldout)
    from graftbench.tasks.t2i.prompt_sets import load_prompt_set, split_prompt_set

    p = cfg.prompts
    return split_prompt_set(load_prompt_set(p.source, p.path), p.heldout_fraction, p.split_seed)


def _split_seed(cfg: T2IConfig) -> int:
    return cfg.scenes.split_seed if cfg.prompts.source == "scenes" else cfg.prompts.split_seed


def finetune_prompts(cfg: T2IConfig) -> list:
    """The training prompts every fine-tuning run draws from (`finetune_prompts` of them)."""
    train = prompt_split(cfg)[0]
    return _subset(train, cfg.finetune_prompts or len(train), _split_seed(cfg))


def eval_prompts(cfg: T2IConfig) -> dict[str, list]:
    """The prompt sets every run is evaluated on: all held-out prompts, the fine-tuning
    prompts (the training reward), and the held-out subset of the reward-against-queries
    curve."""
    held = prompt_split(cfg)[1]
    return {
        "heldout": held,
        "train": finetune_prompts(cfg),
        "curve": _subset(held, cfg.evaluate.curve_prompts, _split_seed(cfg) + 1),
    }
