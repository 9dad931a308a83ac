"""The text-to-image table and figures, from the run records `tasks.t2i` wrote.

tables/t2i.{csv,md}: per run (base, graft, pgraft{N_I}, ddpo), mean and 95% CI over seeds of
the held-out reward and accuracy (overall and per category), the improvement over the base of
the same seed, the training-prompt reward and its change from the base's (paired image by
image, per seed in the notes), diversity, drift from the base, and compute.
Figures: held-out reward against reward queries per method; P-GRAFT's held-out and training
reward against N_I beside base and GRAFT; one row of samples per method for the same prompts.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pandas as pd

from graftbench import records
from graftbench.finetuning.notes import shared_notes
from graftbench.finetuning.tables import (
    COMPUTE,
    load_runs,
    plot_pgraft_vs_ni,
    plot_reward_vs_queries,
    sample_grid,
    save,
    summarise_runs,
)
from graftbench.tasks.t2i.scenes import CATEGORIES

# The paper's T2I claim (GenAI-Bench with SD v2, VQAScore), shown beside our table, never
# mixed into it.
PAPER_CLAIM = (
    "paper (SD v2 on GenAI-Bench, VQAScore): P-GRAFT +8.81% relative over the base, ahead of "
    "GRAFT and DDPO"
)
HEAD = ["heldout_reward", "improvement_pct", "heldout_accuracy"]
TAIL = ["train_reward", "train_change", "diversity", *COMPUTE]


def values(runs: pd.DataFrame) -> list[str]:
    """The table's columns: per-category ones are whatever categories the prompts have
    (the verifier's accuracy per category, or a scorer's mean score per category)."""
    per_category = [c for c in runs.columns if c.startswith(("heldout_acc_", "heldout_reward_"))]

    def rank(column: str) -> tuple:  # the grammar's categories in their order, others by name
        category = column.split("_", 2)[2]
        return (CATEGORIES.index(category) if category in CATEGORIES else len(CATEGORIES), column)

    return HEAD + sorted(per_category, key=rank) + TAIL


def _prompt_notes(cfg, first) -> list[str]:
    """What the held-out prompts and the reward are, for the table's notes."""
    n_held, n_train = int(first["n_heldout_prompts"]), int(first["n_train_prompts"])
    k = int(first["samples_per_prompt"])
    k_train = int(first.get("train_samples_per_prompt", k))  # records before it was a key
    train = (
        f"train_reward: the {n_train} training prompts fine-tuning drew from, {k_train} "
        "images each (the reward it optimised: compare it with heldout_reward for reward "
        "hacking); train_change: train_reward minus the base's at the same seed"
    )
    if cfg.prompts.source == "scenes":
        held = (
            f"held-out: {n_held} prompts whose (colour, shape) or colour-pair combinations "
            f"fine-tuning never saw (pre-training saw every prompt), {k} images each"
        )
    else:
        held = (
            f"held-out: {n_held} prompts of {cfg.prompts.source} ({cfg.prompts.path}) held "
            f"out from fine-tuning ({cfg.prompts.heldout_fraction:g} of each category, "
            f"seed {cfg.prompts.split_seed}), {k} images each"
        )
    evaluator = first.get("evaluator", "verifier")
    if cfg.scorer:
        reward = (
            f"reward: the external scorer {evaluator}'s score; heldout_reward_<category>: "
            "its mean per category; improvement_pct: relative to the base's held-out "
            "reward at the same seed"
        )
    else:
        reward = (
            "reward: the programmatic verifier's score (fraction of the prompt's statements "
            "that hold); accuracy: all hold (GenEval's role); improvement_pct: relative to "
            "the base's held-out reward at the same seed"
        )
    return [f"{held}; {train}", reward]


def aggregate(task_dir: Path, table: Path, figures: list[Path], profile: str) -> None:
    """figures: reward-against-queries, P-GRAFT-against-N_I and samples PNG paths, in order."""
    from graftbench.aggregate import provenance, write_table

    runs = load_runs(task_dir)
    summary = summarise_runs(runs, values(runs))
    first = runs.iloc[0]
    budget = int(runs["reward_queries"].max())
    cfg = _config(task_dir, runs)
    base = (
        "SD-family folder " + cfg.stable_diffusion.path
        if cfg.stable_diffusion
        else "the pre-trained model"
    )
    notes = [
        f"profile: {profile}; every fine-tuning run spends {budget} reward queries on the "
        f"training prompts; base = {base}",
        *_prompt_notes(cfg, first),
        "diversity: mean pixel RMS between images of one prompt; drift: pixel RMS from the "
        "base's image for the same prompt and noise (deterministic DDIM)",
        "sampler_nfe: network evaluations spent sampling during fine-tuning (a guided pair "
        "counts once); FLOPs: torch's counter per UNet call x calls, training as 3x forward",
        "mean ± 95% CI (Student t) over seeds (fine-tuning and evaluation noise; one pre-trained "
        "model); pgraftN: P-GRAFT with the switch at sampler state N_I = N",
        _train_change_note(runs),
        PAPER_CLAIM,
        *shared_notes(task_dir, runs),
        f"versions: {provenance(runs)}",
    ]
    write_table(summary, table, "Text-to-image: reward fine-tuning at equal reward queries", notes)
    plot_reward_vs_queries(task_dir, runs, figures[0], "held-out verifier score")
    plot_pgraft_vs_ni(runs, figures[1], "verifier score")
    plot_samples(task_dir, runs, figures[2])


def _train_change_note(runs: pd.DataFrame) -> str:
    """Each fine-tuned run's train_change per seed with its 95% CI over that seed's images:
    the base and the run score the same prompts from the same noise, so each image is a
    pair, and this says whether fine-tuning raised the reward it optimised."""
    parts = []
    for run, sub in runs[runs["run"] != "base"].groupby("run", sort=False):
        if "train_change_ci" not in sub or sub["train_change_ci"].isna().all():
            continue  # records from before the paired change was written
        seeds = " / ".join(
            f"{c:+.3f} ± {ci:.3f}"
            for c, ci in zip(sub["train_change"], sub["train_change_ci"], strict=True)
        )
        parts.append(f"{run} (seeds {' / '.join(str(x) for x in sub['seed'])}) {seeds}")
    if not parts:
        return "train_change per seed: not in these records (rerun the evaluations)"
    return (
        "train_change per seed, paired image by image with the base (95% CI over the "
        "seed's training-prompt images): " + "; ".join(parts)
    )


def plot_samples(task_dir: Path, runs: pd.DataFrame, path: Path, n_prompts: int = 8) -> None:
    """One row per run (its first seed), the first image of the first n held-out prompts."""
    from graftbench.tasks.t2i.prompts import eval_prompts

    cfg = _config(task_dir, runs)
    prompts = eval_prompts(cfg)["heldout"]
    k = cfg.evaluate.samples_per_prompt
    idx = np.linspace(0, len(prompts) - 1, min(n_prompts, len(prompts))).astype(int)

    def first_images(run_dir: Path) -> list:
        return list(np.load(run_dir / "images.npz")["images"][idx * k])

    fig, axes, first = sample_grid(task_dir, runs, len(idx), first_images)
    for c, i in enumerate(idx):
        axes[0, c].set_title("\n".join(textwrap.wrap(prompts[i].text, 18)), fontsize=6)
    fig.suptitle(
        f"Held-out prompts, same noise for every method (seed {int(first.min())}, first image)",
        fontsize=9,
    )
    save(fig, path)


def _config(task_dir: Path, runs: pd.DataFrame):
    """The t2i config the base run of the first seed was evaluated with."""
    from graftbench.config import parse
    from graftbench.tasks.t2i.config import T2IConfig

    seed = runs.loc[runs["run"] == "base", "seed"].min()
    return parse(
        T2IConfig, records.read_json(task_dir / "base" / f"seed{seed}" / "config.json"), "t2i"
    )
