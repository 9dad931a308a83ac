"""The layout table and figures, from the run records the layout task wrote.

tables/layout.{csv,md}: per run (base, graft, pgraft{N_I}, ddpo), mean and 95% CI over seeds of
the held-out reward, alignment, overlap, maximum IoU and layout FID against the test layouts,
the improvement over the base of the same seed, the training reward (on the conditions
fine-tuning drew from), diversity, drift from the base, and compute. The real test layouts'
own reward, alignment and overlap, and the FID between training and test layouts, are noted
as the reference a perfect model would reach.
Figures: held-out reward against reward queries; P-GRAFT against N_I; rendered layouts per
method for the same held-out conditions and noise.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from graftbench import records
from graftbench.finetuning.notes import shared_notes
from graftbench.finetuning.tables import (
    COMPUTE,
    load_runs,
    plot_pgraft_vs_ni,
    plot_reward_vs_queries,
    plt_agg,
    sample_grid,
    save,
    summarise_runs,
)

VALUES = [
    "heldout_reward",
    "improvement_pct",
    "heldout_alignment",
    "heldout_overlap",
    "max_iou",
    "fid",
    "train_reward",
    "train_alignment",
    "train_overlap",
    "diversity",
    *COMPUTE,
]


def aggregate(task_dir: Path, table: Path, figures: list[Path], profile: str) -> None:
    """figures: reward-against-queries, P-GRAFT-against-N_I and samples PNG paths, in order."""
    from graftbench.aggregate import provenance, write_table

    runs = load_runs(task_dir)
    summary = summarise_runs(runs, VALUES)
    first = runs.iloc[0]
    data = records.read_json(task_dir / "data" / "summary.json")
    real = data["real_test"]
    floor = records.read_json(task_dir / "features.json")["fid_train_vs_test"]
    notes = [
        f"profile: {profile}; every fine-tuning run spends {int(runs['reward_queries'].max())} "
        "reward queries on the fine-tuning conditions; base = the pre-trained model",
        f"data: {data['source']} layouts, {data['n_train']} training and {data['n_test']} test; "
        f"held-out: one sample for each of {int(first['n_heldout'])} test layouts' class "
        f"sequences, compared with those test layouts (max_iou, fid); train_*: "
        f"{int(first['train_samples'])} samples for each of the {int(first['n_train_conditions'])}"
        " training class sequences fine-tuning drew from (the reward it optimised)",
        "reward = exp(-(alignment_weight x alignment + overlap_weight x overlap)) per layout; "
        "alignment and overlap as in LayoutGAN++ (lower is better); improvement_pct: relative "
        "to the base's held-out reward at the same seed",
        f"real test layouts: reward {real['reward']:.3f}, alignment {real['alignment']:.4f}, "
        f"overlap {real['overlap']:.4f}; FID between training and test layouts {floor:.3f} "
        "(a perfect model's level); max_iou: LayoutGAN++'s maximum IoU (higher is better)",
        "diversity: mean box RMS between samples of one condition; drift: box RMS from the "
        "base's sample for the same condition and noise (deterministic DDIM)",
        "mean ± 95% CI (Student t) over seeds (fine-tuning and evaluation noise; one pre-trained"
        " model); pgraftN: P-GRAFT with the switch at sampler state N_I = N",
        *shared_notes(task_dir, runs),
        f"versions: {provenance(runs)}",
    ]
    write_table(summary, table, "Layout: reward fine-tuning at equal reward queries", notes)
    plot_reward_vs_queries(task_dir, runs, figures[0], "held-out layout reward")
    plot_pgraft_vs_ni(runs, figures[1], "layout reward")
    plot_samples(task_dir, runs, figures[2])


def plot_samples(task_dir: Path, runs: pd.DataFrame, path: Path, n: int = 8) -> None:
    """One row per run (its first seed): the first n held-out layouts it sampled."""
    from graftbench.tasks.layout.files import read_json
    from graftbench.tasks.layout.render import legend, render

    def rendered(run_dir: Path) -> list:
        return [render(x, 96) for x in read_json(run_dir / "samples.json")[:n]]

    plt = plt_agg()
    fig, _, first = sample_grid(task_dir, runs, n, rendered, cell=(1.3, 1.45), top=0.8)
    handles = [
        plt.Rectangle((0, 0), 1, 1, color=[v / 255 for v in rgb]) for rgb in legend().values()
    ]
    fig.legend(handles, list(legend()), loc="lower center", ncol=len(handles), fontsize=7)
    fig.suptitle(
        f"Held-out conditions, same noise for every method (seed {int(first.min())})", fontsize=9
    )
    save(fig, path, rect=(0, 0.06, 1, 1))
