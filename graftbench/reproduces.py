"""What reproduces: the paper's claims, each read off a profile's tables with its 95% CI over
seeds and given a one-word verdict.

The claims and the paper's numbers are typed here, once; every other cell comes from the
tables (`results/{profile}/tables/*.csv`, written by the workflow), so the README's table is
regenerated, never edited: `graftbench summary --tables docs/results/cpu --update README.md`.

A reading is a mean and the half-width of its 95% Student-t CI over seeds. Fine-tuning
changes (`improvement_pct`) are paired with the base of the same seed, so their CI is the
paired one. A difference between two rows (P-GRAFT minus DDPO, INC minus the base) is not
paired in the tables, so its CI adds the two rows' CIs in quadrature: wider than a paired CI
would be, never narrower (each row's seeds share noise with the other's, which pairing would
cancel).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

Tables = dict[str, pd.DataFrame]


@dataclass(frozen=True)
class Reading:
    label: str  # which row(s) of the table, e.g. "pgraft6" or "8+16 steps"
    mean: float
    ci: float  # 95% CI half-width over seeds; NaN with one seed
    unit: str = ""  # "%" for relative changes


@dataclass(frozen=True)
class Claim:
    claim: str  # the paper's claim, in our words
    paper: str  # the paper's number (or what it reports, where its table is not public to us)
    table: str  # the table it is read from: results/{profile}/tables/{table}.csv
    read: Callable[[Tables], list[Reading]]
    direction: int  # +1: the claim says the reading is above 0; -1: below; 0: equal to 0
    budget: Callable[[Tables], str]  # what the readings spent, from the same table


def verdict_of(reading: Reading, direction: int) -> str:
    """yes: the CI lies on the claimed side of 0 (direction 0: the CI holds 0); no: it lies on
    the other side (direction 0: it excludes 0); unclear: it holds 0, or has no CI."""
    if math.isnan(reading.ci) or math.isnan(reading.mean):
        return "unclear"
    low, high = reading.mean - reading.ci, reading.mean + reading.ci
    if direction == 0:
        return "yes" if low <= 0 <= high else "no"
    if low > 0 or high < 0:
        return "yes" if (low > 0) == (direction > 0) else "no"
    return "unclear"


def verdict(readings: list[Reading], direction: int) -> str:
    """One word for several readings (e.g. one per P-GRAFT N_I): the common verdict when they
    agree; partly when some but not all say yes; else no when any says no; else unclear."""
    words = {verdict_of(r, direction) for r in readings}
    if not words:
        return "not run"
    if len(words) == 1:
        return words.pop()
    return "partly" if "yes" in words else ("no" if "no" in words else "unclear")


def _row(table: pd.DataFrame, key: str, value) -> pd.Series | None:
    hit = table[table[key] == value]
    return None if hit.empty else hit.iloc[0]


def _ci(row: pd.Series, col: str) -> float:
    return float(row.get(f"{col}_ci95", float("nan")))


def _runs(table: pd.DataFrame, prefix: str) -> pd.DataFrame:
    """The rows of runs `prefix` (pgraft: pgraft3, pgraft6, ... in N_I order)."""
    names = table["run"].astype(str)
    rows = table[names.str.fullmatch(rf"{prefix}\d*")]
    n_i = [int(run[len(prefix) :] or 0) for run in rows["run"]]
    return rows.iloc[sorted(range(len(rows)), key=n_i.__getitem__)]


def improvement(prefix: str, name: str) -> Callable[[Tables], list[Reading]]:
    """Each run `prefix`'s headline change over the base of the same seed (%)."""

    def read(tables: Tables) -> list[Reading]:
        rows = _runs(tables[name], prefix)
        return [
            Reading(r["run"], r["improvement_pct_mean"], _ci(r, "improvement_pct"), "%")
            for _, r in rows.iterrows()
        ]

    return read


def improvement_over(prefix: str, other: str, name: str) -> Callable[[Tables], list[Reading]]:
    """Each run `prefix`'s improvement_pct minus run `other`'s (percentage points; CIs in
    quadrature: the module's docstring)."""

    def read(tables: Tables) -> list[Reading]:
        ref = _row(tables[name], "run", other)
        if ref is None:
            return []
        out = []
        for _, r in _runs(tables[name], prefix).iterrows():
            ci = math.hypot(_ci(r, "improvement_pct"), _ci(ref, "improvement_pct"))
            diff = r["improvement_pct_mean"] - ref["improvement_pct_mean"]
            out.append(Reading(f"{r['run']} - {other}", diff, ci, " pts"))
        return out

    return read


def _fid_columns(table: pd.DataFrame) -> list[str]:
    return sorted(
        c[: -len("_mean")] for c in table.columns if c.startswith("fid.") and "_mean" in c
    )


def inc_against_base(equal: str) -> Callable[[Tables], list[Reading]]:
    """Each INC row's FID minus a base row's, per FID back-end: the base at the same steps
    (equal="steps"), or the cheapest base costing at least INC's FLOPs (equal="flops")."""

    def read(tables: Tables) -> list[Reading]:
        table = tables["inc"]
        base = table[table["method"] == "base"].sort_values("flops_per_image_mean")
        out = []
        for _, r in table[table["method"] == "inc"].iterrows():
            if equal == "steps":
                ref = _row(base, "steps", r["steps"])
            else:
                costlier = base[base["flops_per_image_mean"] >= r["flops_per_image_mean"]]
                ref = None if costlier.empty else costlier.iloc[0]
            if ref is None:
                continue
            for col in _fid_columns(table):
                out.append(
                    Reading(
                        f"{col[4:]} {r['steps']}+{r['corrector_steps']} vs {ref['steps']}",
                        r[f"{col}_mean"] - ref[f"{col}_mean"],
                        math.hypot(_ci(r, col), _ci(ref, col)),
                    )
                )
        return out

    return read


def toy2d_inc_per_flop(tables: Tables) -> list[Reading]:
    """Each base+INC row's energy distance to the data law minus the cheapest base's that
    costs at least as many FLOPs."""
    table = tables["toy2d_inc"]
    base = table[table["sampler"] == "base"].sort_values("flops_mean")
    out = []
    for _, r in table[table["sampler"] == "base+inc"].iterrows():
        costlier = base[base["flops_mean"] >= r["flops_mean"]]
        if costlier.empty:
            continue
        ref = costlier.iloc[0]
        label = f"{r['base_steps']}+{r['corrector_steps']} vs {ref['base_steps']}"
        diff = r["energy_mean"] - ref["energy_mean"]
        out.append(Reading(label, diff, math.hypot(_ci(r, "energy"), _ci(ref, "energy"))))
    return out


def toy2d_target(run: str) -> Callable[[Tables], list[Reading]]:
    """Run `run`'s energy distance to its exact target law minus two target samples' (the
    level sampling alone gives): about 0 when the fine-tuned law is the target."""

    def read(tables: Tables) -> list[Reading]:
        r = _row(tables["toy2d"], "run", run)
        if r is None:
            return []
        diff = r["target_energy_mean"] - r["target_null_mean"]
        return [Reading(run, diff, math.hypot(_ci(r, "target_energy"), _ci(r, "target_null")))]

    return read


def queries(name: str) -> Callable[[Tables], str]:
    def budget(tables: Tables) -> str:
        spent = tables[name]["reward_queries_mean"].dropna()
        q = sorted({int(v) for v in spent if v > 0})  # the base and best_of_m fine-tune nothing
        return f"{'/'.join(f'{v:,}' for v in q)} reward queries"

    return budget


def flops(name: str, column: str) -> Callable[[Tables], str]:
    def budget(tables: Tables) -> str:
        values = tables[name][f"{column}_mean"]
        return f"{values.min():.2g}-{values.max():.2g} FLOPs/sample"

    return budget


TASK_OF = {"inc": "unconditional", "toy2d_inc": "toy2d"}  # tables named otherwise than their task
PAPER_T2I = "+8.81% VQAScore over SD v2 (GenAI-Bench)"
NOT_PUBLIC = "reported; its table is not public to us"
CLAIMS = [
    Claim("P-GRAFT raises the reward over the base", PAPER_T2I, "t2i",
          improvement("pgraft", "t2i"), +1, queries("t2i")),
    Claim("P-GRAFT raises the reward over the base", NOT_PUBLIC, "layout",
          improvement("pgraft", "layout"), +1, queries("layout")),
    Claim("P-GRAFT raises the reward over the base", NOT_PUBLIC, "molecule",
          improvement("pgraft", "molecule"), +1, queries("molecule")),
    Claim("P-GRAFT beats DDPO at equal reward queries", "ahead of DDPO", "t2i",
          improvement_over("pgraft", "ddpo", "t2i"), +1, queries("t2i")),
    Claim("P-GRAFT beats DDPO at equal reward queries", "ahead of policy gradient", "layout",
          improvement_over("pgraft", "ddpo", "layout"), +1, queries("layout")),
    Claim("P-GRAFT beats DDPO at equal reward queries", "ahead of policy gradient", "molecule",
          improvement_over("pgraft", "ddpo", "molecule"), +1, queries("molecule")),
    Claim("GRAFT's fine-tuned law is its rule's reshaped base law", "a lemma (no number)",
          "toy2d", lambda t: toy2d_target("graft")(t) + toy2d_target("graft_threshold")(t), 0,
          queries("toy2d")),
    Claim("INC lowers FID at the same base steps", "CelebA-HQ 256: FID 13.39 -> 8.02", "inc",
          inc_against_base("steps"), -1, flops("inc", "flops_per_image")),
    Claim("INC beats running the base longer (FID at equal FLOPs)",
          "better FID per FLOP than a longer base run", "inc", inc_against_base("flops"), -1,
          flops("inc", "flops_per_image")),
    Claim("INC beats running the base longer (distance to the data law)", "(images only)",
          "toy2d_inc", toy2d_inc_per_flop, -1, flops("toy2d_inc", "flops")),
]  # fmt: skip


def load_tables(folder: str | Path) -> Tables:
    """Every `<name>.csv` in a tables folder (results/{profile}/tables, or a checked-in copy)."""
    folder = Path(folder)
    tables = {p.stem: pd.read_csv(p) for p in sorted(folder.glob("*.csv"))}
    if not tables:
        raise FileNotFoundError(f"{folder}: no tables (*.csv) yet; run the workflow first")
    return tables


def _seeds(table: pd.DataFrame) -> str:
    seeds = sorted({s for text in table["seeds"].astype(str) for s in text.split()}, key=int)
    return f"seeds {', '.join(seeds)}" if len(seeds) > 1 else f"seed {seeds[0]}"


def _reading(r: Reading) -> str:
    if math.isnan(r.ci):
        return f"{r.label} {r.mean:+.3g}{r.unit}"
    digits = max(0, 2 - math.floor(math.log10(r.ci))) if r.ci > 0 else 3
    digits = min(digits, 4)
    return f"{r.label} {r.mean:+.{digits}f} ± {r.ci:.{digits}f}{r.unit}"


def reproduces_table(tables: Tables, profile: str) -> str:
    """The "what reproduces" table (Markdown), one row per claim whose table was made."""
    lines = [
        "| claim | paper | task | ours: mean ± 95% CI over seeds | budget, seeds | verdict |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for c in CLAIMS:
        if c.table not in tables:
            continue
        readings = c.read(tables)
        ours = "; ".join(_reading(r) for r in readings) or "no rows to compare"
        spent = f"{profile}: {c.budget(tables)}, {_seeds(tables[c.table])}"
        lines.append(
            f"| {c.claim} | {c.paper} | {TASK_OF.get(c.table, c.table)} | {ours} | {spent} | "
            f"{verdict(readings, c.direction)} |"
        )
    return "\n".join(lines) + "\n"
