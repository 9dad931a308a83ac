"""The molecule table and figures, from the run records the molecule task wrote.

tables/molecule.{csv,md}: per run (base, graft, graft_dedup, pgraft{N_I}, ddpo), mean and 95%
CI over seeds of the reward of fresh samples, the improvement over the base of the same seed,
validity, uniqueness, novelty, QED, SA, internal diversity, FCD to the test molecules, drift
from the base, and compute. The real test molecules' own metrics are noted as the reference.
Figures: reward against reward queries; P-GRAFT against N_I; drawn molecules per method.
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
    sample_grid,
    save,
    summarise_runs,
)

VALUES = [
    "reward",
    "improvement_pct",
    "validity",
    "uniqueness",
    "novelty",
    "qed",
    "sa",
    "intdiv",
    "fcd",
    *COMPUTE,
]


def aggregate(task_dir: Path, table: Path, figures: list[Path], profile: str) -> None:
    """figures: reward-against-queries, P-GRAFT-against-N_I and samples PNG paths, in order."""
    from graftbench.aggregate import provenance, write_table

    runs = load_runs(task_dir, headline="reward")
    summary = summarise_runs(runs, [v for v in VALUES if v in runs])
    cfg = records.read_json(task_dir / "config.json")
    data = records.read_json(task_dir / "data" / "summary.json")
    real = data["real_test"]
    notes = [
        f"profile: {profile}; every fine-tuning run spends {int(runs['reward_queries'].max())} "
        f"reward queries; base = the pre-trained model; reward: {cfg['reward']} (invalid = 0)",
        f"data: {data['source']}, {data['n_train']} training and {data['n_test']} test "
        f"molecules ({data['n_too_long']} longer than the model's {cfg['model']['length']} "
        f"tokens left out); every run is scored on {int(runs['n'].iloc[0])} fresh samples "
        "drawn with the same random numbers per seed (none of them scored during fine-tuning)",
        "validity: share rdkit parses; uniqueness: distinct among valid; novelty: valid distinct"
        " not in the training set (MOSES definitions); qed, sa: means over valid molecules (sa "
        "is the raw SA score, 1 easy to 10 hard); intdiv: MOSES IntDiv_1 (Morgan r=2, 1024 "
        "bits); fcd: Frechet ChemNet Distance to the test molecules (valid samples only)",
        f"real test molecules: reward {real['reward']:.3f}, qed {real['qed']:.3f}, sa "
        f"{real['sa']:.2f}, intdiv {real['intdiv']:.3f}",
        "drift: share of token positions that differ from the base's samples drawn with the "
        "same random numbers; improvement_pct: relative to the base's reward at the same seed",
        "mean ± 95% CI (Student t) over seeds (fine-tuning and evaluation randomness; one "
        "pre-trained model); pgraftN: P-GRAFT with the switch at sampler state N_I = N",
        *shared_notes(task_dir, runs),
        f"versions: {provenance(runs)}",
    ]
    write_table(summary, table, "Molecules: reward fine-tuning at equal reward queries", notes)
    plot_reward_vs_queries(
        task_dir,
        runs,
        figures[0],
        f"{cfg['reward']} of fresh samples",
        "Reward of fresh samples during fine-tuning",
    )
    plot_pgraft_vs_ni(runs, figures[1], cfg["reward"], columns=("reward",))
    plot_samples(task_dir, runs, figures[2])


def plot_samples(task_dir: Path, runs: pd.DataFrame, path: Path, n: int = 6) -> None:
    """One row per run (its first seed): its first n valid samples, drawn by rdkit."""
    import numpy as np
    from rdkit.Chem import Draw

    from graftbench.tasks.molecule.data import parse, read_scored_smiles

    def drawings(run_dir: Path) -> list:
        smiles, _ = read_scored_smiles(run_dir / "samples.tsv")
        mols = [m for m in map(parse, smiles) if m is not None][:n]
        return [np.asarray(Draw.MolToImage(m, size=(200, 200))) for m in mols]

    fig, _, first = sample_grid(task_dir, runs, n, drawings, cell=(1.6, 1.7), top=0.4)
    fig.suptitle(
        f"First valid samples, same random numbers for every method (seed {int(first.min())})",
        fontsize=9,
    )
    save(fig, path)
