"""What the reward fine-tuning tasks' tables and figures share (t2i, layout, molecule): run
order, the improvement over the base of the same seed, the reward-against-queries curve (as
the paired change from the base of the same seed) and the P-GRAFT against N_I figure. Each
run record holds a headline reward (heldout_reward; the molecule task's `reward`) and
curve_reward (the evaluation subset scored after fine-tuning rounds; the base's at 0
queries)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from graftbench import records
from graftbench.finetuning.task import BEST_OF_M

# the last columns of every fine-tuning table: drift from the base, then the budget and compute
# (fine-tuning's) and FLOPs per evaluation sample (best_of_m pays its selection there)
COMPUTE = [
    "drift",
    "reward_queries",
    "sampler_nfe",
    "sampler_flops",
    "train_flops",
    "inference_flops",
    "wall_s",
]


def order(run: str) -> tuple:
    method = run.rstrip("0123456789")
    ranks = {"base": 0, "graft": 1, "self_fit": 1.75, "pgraft": 2, "ddpo": 3, BEST_OF_M: 5}
    rank = ranks.get(method, 4)  # best_of_m, the reference without fine-tuning, last
    if method.startswith("graft_"):  # GRAFT's variants (graft_threshold, graft_dedup)
        rank = 1.5
    return rank, int(run[len(method) :] or 0), run


def load_runs(task_dir: Path, headline: str = "heldout_reward") -> pd.DataFrame:
    """One row per (run, seed), with improvement_pct of the `headline` reward column against
    the base run of the same seed."""
    from graftbench.aggregate import collect

    runs = collect(task_dir)
    base = runs[runs["run"] == "base"].set_index("seed")[headline]
    if base.empty:
        raise FileNotFoundError(f"{task_dir}: no base/seed*/ records to compare with")
    ref = runs["seed"].map(base).where(lambda b: b > 0)  # undefined for a base scoring 0
    runs["improvement_pct"] = 100 * (runs[headline] - ref) / ref
    runs["order"] = runs["run"].map(order)
    return runs.sort_values(["order", "seed"]).drop(columns="order")


def summarise_runs(runs: pd.DataFrame, values: list[str]) -> pd.DataFrame:
    """Mean and CI95 over seeds of `values` per run, rows in table order (`order`)."""
    from graftbench.aggregate import summarise

    summary = summarise(runs, ["run"], values)
    return summary.iloc[sorted(range(len(summary)), key=lambda i: order(summary["run"][i]))]


def save(fig, path: Path, rect: tuple | None = None) -> None:
    """Lay out (within rect, leaving room for a figure legend) and write a PNG atomically."""
    import matplotlib.pyplot as plt

    fig.tight_layout(rect=rect)
    path.parent.mkdir(parents=True, exist_ok=True)
    with records.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)


def plt_agg():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def curves(task_dir: Path, runs: pd.DataFrame) -> pd.DataFrame:
    """(run, seed, reward_queries, curve_reward, change) rows: each run's rounds.jsonl curve
    points, preceded by the base's score on the same prompts and noise at 0 queries; `change`
    is curve_reward minus the base's of the same seed (the paired change). Runs without a
    rounds.jsonl (e.g. best_of_m, which has no fine-tuning rounds) are left out."""
    base = runs[runs["run"] == "base"].set_index("seed")["curve_reward"]
    rows = []
    for run, seed in runs.loc[runs["run"] != "base", ["run", "seed"]].itertuples(index=False):
        path = task_dir / run / f"seed{seed}" / "rounds.jsonl"
        if not path.exists():
            continue
        rows.append((run, seed, 0, base.get(seed, np.nan)))
        for r in records.read_jsonl(path):
            if "curve_reward" in r:
                rows.append((run, seed, r["reward_queries"], r["curve_reward"]))
    data = pd.DataFrame(rows, columns=["run", "seed", "reward_queries", "curve_reward"])
    data["change"] = data["curve_reward"] - data["seed"].map(base)
    return data


def plot_reward_vs_queries(
    task_dir: Path,
    runs: pd.DataFrame,
    path: Path,
    ylabel: str = "held-out reward",
    title: str = "Held-out reward during fine-tuning",
) -> None:
    """Each run's paired change of curve_reward from the base of the same seed (same prompts
    and evaluation noise, so the between-seed spread of the base cancels) against reward
    queries: mean and 95% CI over seeds; the base is the zero line, best_of_m (no
    fine-tuning) a dotted line at its mean paired change."""
    from graftbench.aggregate import ci95

    plt = plt_agg()
    fig, ax = plt.subplots(figsize=(6, 4))
    data = curves(task_dir, runs)
    ax.axhline(0.0, color="black", ls="--", lw=1, label="base")
    for run in sorted(set(data["run"]) - {BEST_OF_M}, key=order):
        g = data[data["run"] == run].groupby("reward_queries")["change"]
        mean, ci = g.mean(), g.agg(ci95)
        ax.plot(mean.index, mean.values, marker="o", ms=3, label=run)
        ax.fill_between(mean.index, mean - ci.fillna(0), mean + ci.fillna(0), alpha=0.15)
    ref = runs[runs["run"] == BEST_OF_M]
    if "curve_reward" in runs and not ref.empty:
        base = runs[runs["run"] == "base"].set_index("seed")["curve_reward"]
        change = (ref["curve_reward"] - ref["seed"].map(base)).dropna()
        if not change.empty:
            label = f"{BEST_OF_M} (no fine-tuning)"
            ax.axhline(change.mean(), color="dimgray", ls=":", lw=1.5, label=label)
    ax.set_xlabel("reward queries")
    ax.set_ylabel(f"{ylabel}:\nchange from the base (same seed)")
    ax.set_title(f"{title}\n(mean, 95% CI over seeds of the paired change)", fontsize=10)
    ax.legend(fontsize=8)
    save(fig, path)


def mean_ci(ax, groups, **style) -> None:
    """Mean and 95% CI over seeds of each group (a grouped column: x = the group key) as
    error bars on `ax`; style: matplotlib's errorbar keywords (marker o and caps by default)."""
    from graftbench.aggregate import ci95

    mean = groups.mean()
    yerr = groups.agg(ci95).fillna(0).values
    ax.errorbar(mean.index, mean.values, yerr=yerr, **{"marker": "o", "capsize": 3, **style})


def plot_pgraft_vs_ni(
    runs: pd.DataFrame,
    path: Path,
    ylabel: str = "reward",
    columns: tuple[str, ...] = ("heldout_reward", "train_reward"),
) -> None:
    """P-GRAFT's `columns` (held-out and training reward) against N_I; base and GRAFT as
    lines."""

    plt = plt_agg()
    fig, ax = plt.subplots(figsize=(6, 4))
    pg = runs[runs["method"] == "pgraft"]
    for col, colour in zip(columns, ("C0", "C1", "C2"), strict=False):
        if not pg.empty:
            mean_ci(ax, pg.groupby("intermediate_step")[col], color=colour, label=f"P-GRAFT, {col}")
        for run, ls in (("base", "--"), ("graft", ":")):
            ref = runs.loc[runs["run"] == run, col]
            if not ref.empty:
                ax.axhline(ref.mean(), color=colour, ls=ls, lw=1, label=f"{run}, {col}")
    ax.set_xlabel("N_I (sampler state where the fine-tuned model hands over to the base)")
    ax.set_ylabel(ylabel)
    ax.set_title("P-GRAFT: reward against the intermediate step", fontsize=10)
    ax.legend(fontsize=7)
    save(fig, path)


def sample_grid(
    task_dir: Path,
    runs: pd.DataFrame,
    n: int,
    images,
    cell: tuple[float, float] = (1.4, 1.5),
    top: float = 0.6,
):
    """A figure with one row per run in table order, its first seed's first n pictures from
    images(run folder) -> list of (H, W[, C]) arrays; returns (fig, axes (runs, n), first
    seed per run) for the caller's titles, legend and `save`."""
    plt = plt_agg()
    names = sorted(runs["run"].unique(), key=order)
    first = runs.groupby("run")["seed"].min()
    fig, axes = plt.subplots(
        len(names), n, figsize=(cell[0] * n, cell[1] * len(names) + top), squeeze=False
    )
    for r, run in enumerate(names):
        pictures = images(task_dir / run / f"seed{first[run]}")
        for c in range(n):
            ax = axes[r, c]
            if c < len(pictures):
                ax.imshow(pictures[c], interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(run, fontsize=8)
    return fig, axes, first
