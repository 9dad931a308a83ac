"""Compare two folders of workflow tables column by column, wall times left out: what a change
that only moves code must leave equal. Prints each table's differing columns; exits 1 if any.

    python benchmarks/compare_tables.py before/results/smoke/tables after/results/smoke/tables
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

TIMES = ("wall_s", "sample_s", "train_s", "finetune_s", "elapsed_s", "reward_s")


def differing(a: Path, b: Path) -> dict[str, list[str]]:
    """Table name -> the columns (all but times) whose values differ, or that one side lacks;
    benchmarks.csv (job times) is left out."""
    out = {}
    for path in sorted(a.glob("*.csv")):
        if path.name == "benchmarks.csv":
            continue
        x, y = pd.read_csv(path), pd.read_csv(b / path.name)
        columns = sorted(set(x.columns) | set(y.columns))
        out[path.name] = [
            c
            for c in columns
            if not c.startswith(TIMES) and (c not in x or c not in y or not x[c].equals(y[c]))
        ]
    return out


if __name__ == "__main__":
    result = differing(Path(sys.argv[1]), Path(sys.argv[2]))
    for name, columns in result.items():
        print(f"{name}: {', '.join(columns) or 'no column differs'}")
    sys.exit(1 if any(result.values()) else 0)
