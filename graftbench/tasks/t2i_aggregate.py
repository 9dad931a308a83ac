"""The text-to-image table and figures, from the run records `tasks.t2i` wrote.

tables/t2i.{csv,md}: per run (base, graft, pgraft{N_I}, ddpo), mean and 95% CI over seeds of
the held-out reward and accuracy (overall and per category), the improvement over the base of
the same seed, the training-prompt reward, diversity, drift from the base, and compute.
Figures: held-out reward against reward queries per method; P-GRAFT's held-out and training
reward against N_I beside base and GRAFT; one row of samples per method for the same prompts.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pandas as pd

from graftbench import records
from graftbench.t2i.scenes import CATEGORIES

# The paper's T2I claim (GenAI-Bench with SD v2, VQAScore), shown beside our table, never
# mixed into it.
PAPER_CLAIM = (
    "paper (SD v2 on GenAI-Bench, VQAScore): P-GRAFT +8.81% relative over the base, ahead of "
    "GRAFT and DDPO"
)
VALUES = [
    "heldout_reward", "improvement_pct", "heldout_accuracy",
    *[f"heldout_acc_{c}" for c in CATEGORIES], "train_reward", "diversity", "drift",
    "reward_queries", "sampler_nfe", "sampler_flops", "train_flops", "wall_s",
]  # fmt: skip


def _order(run: str) -> tuple:
    method = run.rstrip("0123456789")
    rank = {"base": 0, "graft": 1, "pgraft": 2, "ddpo": 3}.get(method, 4)
    return rank, int(run[len(method) :] or 0), run


def load_runs(task_dir: Path) -> pd.DataFrame:
    """One row per (run, seed), with improvement_pct against the base run of the same seed."""
    from graftbench.aggregate import collect

    runs = collect(task_dir)
    base = runs[runs["run"] == "base"].set_index("seed")["heldout_reward"]
    if base.empty:
        raise FileNotFoundError(f"{task_dir}: no base/seed*/ records to compare with")
    ref = runs["seed"].map(base).where(lambda b: b > 0)  # undefined for a base scoring 0
    runs["improvement_pct"] = 100 * (runs["heldout_reward"] - ref) / ref
    runs["order"] = runs["run"].map(_order)
    return runs.sort_values(["order", "seed"]).drop(columns="order")


def aggregate(task_dir: Path, table: Path, figures: list[Path], profile: str) -> None:
    """figures: reward-against-queries, P-GRAFT-against-N_I and samples PNG paths, in order."""
    from graftbench.aggregate import provenance, summarise, write_table

    runs = load_runs(task_dir)
    summary = summarise(runs, ["run"], VALUES)
    summary = summary.iloc[sorted(range(len(summary)), key=lambda i: _order(summary["run"][i]))]
    first = runs.iloc[0]
    budget = int(runs["reward_queries"].max())
    notes = [
        f"profile: {profile}; every fine-tuning run spends {budget} verifier queries on the "
        "training prompts; base = the pre-trained model",
        f"held-out: {int(first['n_heldout_prompts'])} prompts whose (colour, shape) or colour-"
        f"pair combinations fine-tuning never saw (pre-training saw every prompt), {int(first['samples_per_prompt'])}"
        f" images each; train_reward: the {int(first['n_train_prompts'])} training prompts "
        "fine-tuning drew from (the reward it optimised: compare it with heldout_reward for "
        "reward hacking)",
        "reward: the programmatic verifier's score (fraction of the prompt's statements that "
        "hold); accuracy: all hold (GenEval's role); improvement_pct: relative to the base's "
        "held-out reward at the same seed",
        "diversity: mean pixel RMS between images of one prompt; drift: pixel RMS from the "
        "base's image for the same prompt and noise (deterministic DDIM)",
        "sampler_nfe: network evaluations spent sampling during fine-tuning (a guided pair "
        "counts once); FLOPs: torch's counter per UNet call x calls, training as 3x forward",
        "mean ± 95% CI (Student t) over seeds (fine-tuning and evaluation noise; one pre-trained "
        "model); pgraftN: P-GRAFT with the switch at sampler state N_I = N",
        PAPER_CLAIM,
        f"versions: {provenance(runs)}",
    ]
    write_table(summary, table, "Text-to-image: reward fine-tuning at equal reward queries", notes)
    plot_reward_vs_queries(task_dir, runs, figures[0])
    plot_pgraft_vs_ni(runs, figures[1])
    plot_samples(task_dir, runs, figures[2])


def _save(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with records.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def curves(task_dir: Path, runs: pd.DataFrame) -> pd.DataFrame:
    """(run, seed, reward_queries, curve_reward) rows: each run's rounds.jsonl curve points,
    preceded by the base's score on the same prompts and noise at 0 queries."""
    base = runs[runs["run"] == "base"].set_index("seed")["curve_reward"]
    rows = []
    for run, seed in runs.loc[runs["run"] != "base", ["run", "seed"]].itertuples(index=False):
        rows.append((run, seed, 0, base.get(seed, np.nan)))
        for r in records.read_jsonl(task_dir / run / f"seed{seed}" / "rounds.jsonl"):
            if "curve_reward" in r:
                rows.append((run, seed, r["reward_queries"], r["curve_reward"]))
    return pd.DataFrame(rows, columns=["run", "seed", "reward_queries", "curve_reward"])


def plot_reward_vs_queries(task_dir: Path, runs: pd.DataFrame, path: Path) -> None:
    from graftbench.aggregate import ci95

    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    data = curves(task_dir, runs)
    for run in sorted(data["run"].unique(), key=_order):
        g = data[data["run"] == run].groupby("reward_queries")["curve_reward"]
        mean, ci = g.mean(), g.agg(ci95)
        ax.plot(mean.index, mean.values, marker="o", ms=3, label=run)
        ax.fill_between(mean.index, mean - ci.fillna(0), mean + ci.fillna(0), alpha=0.15)
    ax.set_xlabel("reward queries")
    ax.set_ylabel("held-out verifier score")
    ax.set_title("Held-out reward during fine-tuning (mean, 95% CI over seeds)", fontsize=10)
    ax.legend(fontsize=8)
    _save(fig, path)


def plot_pgraft_vs_ni(runs: pd.DataFrame, path: Path) -> None:
    """P-GRAFT's held-out and training reward against N_I; base and GRAFT as lines."""
    from graftbench.aggregate import ci95

    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    pg = runs[runs["method"] == "pgraft"]
    for col, colour in (("heldout_reward", "C0"), ("train_reward", "C1")):
        if not pg.empty:
            g = pg.groupby("intermediate_step")[col]
            ax.errorbar(g.mean().index, g.mean().values, yerr=g.agg(ci95).fillna(0).values,
                        marker="o", capsize=3, color=colour, label=f"P-GRAFT, {col}")  # fmt: skip
        for run, ls in (("base", "--"), ("graft", ":")):
            ref = runs.loc[runs["run"] == run, col]
            if not ref.empty:
                ax.axhline(ref.mean(), color=colour, ls=ls, lw=1, label=f"{run}, {col}")
    ax.set_xlabel("N_I (sampler state where the fine-tuned model hands over to the base)")
    ax.set_ylabel("verifier score")
    ax.set_title("P-GRAFT: reward against the intermediate step", fontsize=10)
    ax.legend(fontsize=7)
    _save(fig, path)


def plot_samples(task_dir: Path, runs: pd.DataFrame, path: Path, n_prompts: int = 8) -> None:
    """One row per run (its first seed), the first image of the first n held-out prompts."""
    from graftbench.config import parse
    from graftbench.tasks.t2i import T2IConfig, eval_prompts

    plt = _plt()
    names = sorted(runs["run"].unique(), key=_order)
    first = runs.groupby("run")["seed"].min()
    cfg = parse(T2IConfig, records.read_json(task_dir / "base" / f"seed{first['base']}" / "config.json"), "t2i")  # fmt: skip
    prompts = eval_prompts(cfg)["heldout"]
    k = cfg.evaluate.samples_per_prompt
    idx = np.linspace(0, len(prompts) - 1, min(n_prompts, len(prompts))).astype(int)
    fig, axes = plt.subplots(len(names), len(idx), figsize=(1.4 * len(idx), 1.5 * len(names) + 0.6),
                             squeeze=False)  # fmt: skip
    for r, run in enumerate(names):
        images = np.load(task_dir / run / f"seed{first[run]}" / "images.npz")["images"]
        for c, i in enumerate(idx):
            ax = axes[r, c]
            ax.imshow(images[i * k], interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title("\n".join(textwrap.wrap(prompts[i].text, 18)), fontsize=6)
            if c == 0:
                ax.set_ylabel(run, fontsize=8)
    fig.suptitle("Held-out prompts, same noise for every method (seed "
                 f"{int(first.min())}, first image)", fontsize=9)  # fmt: skip
    _save(fig, path)
