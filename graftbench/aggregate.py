"""Gather run records into tables (CSV + Markdown, mean and 95% CI over seeds) and figures.

Reads only what runs wrote: every results/{profile}/{task}/{run}/seed{n}/metrics.json and,
beside it, eval.json. Nothing is recomputed here.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from graftbench import records


def collect(task_dir: str | Path) -> pd.DataFrame:
    """One row per (run, seed): metrics.json flattened, eval.json merged in ("fid.<backend>")."""
    rows = []
    for metrics_path in sorted(Path(task_dir).glob("*/seed*/metrics.json")):
        row = records.read_json(metrics_path)
        eval_path = metrics_path.with_name("eval.json")
        if eval_path.exists():
            row.update(records.read_json(eval_path))
        row["run"] = metrics_path.parent.parent.name
        rows.append(row)
    if not rows:
        raise FileNotFoundError(f"{task_dir}: no */seed*/metrics.json records to aggregate")
    return pd.json_normalize(rows)


def ci95(values: pd.Series) -> float:
    """Half-width of the 95% Student-t interval of the mean (NaN for a single seed)."""
    v = values.dropna().to_numpy(dtype=float)
    if len(v) < 2:
        return float("nan")
    return float(stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v)))


def summarise(df: pd.DataFrame, group: list[str], values: list[str]) -> pd.DataFrame:
    """Mean and CI95 of each value column per group, with the seeds that went into it."""
    out = []
    for key, sub in df.groupby(group, sort=True, dropna=False):
        row = dict(zip(group, key if isinstance(key, tuple) else (key,), strict=True))
        row["n_seeds"] = len(sub)
        row["seeds"] = " ".join(str(s) for s in sorted(sub["seed"]))
        for col in values:
            if col in sub:
                row[f"{col}_mean"] = sub[col].astype(float).mean()
                row[f"{col}_ci95"] = ci95(sub[col])
        out.append(row)
    return pd.DataFrame(out)


def write_table(summary: pd.DataFrame, out_csv: str | Path, title: str, notes: list[str]) -> None:
    """CSV for machines; Markdown (mean ± CI) with provenance notes for people."""
    with records.atomic_path(out_csv) as tmp:
        summary.to_csv(tmp, index=False)
    md = summary.copy()
    for col in [c for c in md.columns if c.endswith("_mean")]:
        base = col[: -len("_mean")]
        ci = md.get(f"{base}_ci95")
        md[base] = [
            mean_ci_text(m, c)
            for m, c in zip(md[col], ci if ci is not None else [np.nan] * len(md), strict=True)
        ]
        md = md.drop(columns=[c for c in (col, f"{base}_ci95") if c in md])
    lines = [
        f"# {title}",
        "",
        *[f"- {n}" for n in notes],
        "",
        md.astype(object)
        .where(md.notna(), None)
        .to_markdown(index=False, missingval="", floatfmt=".4g"),
        "",
    ]
    with records.atomic_path(Path(out_csv).with_suffix(".md")) as tmp:
        tmp.write_text("\n".join(lines))


def mean_ci_text(mean: float, ci: float) -> str:
    """Mean ± CI to a sensible precision; a value identical across seeds (NFE, FLOPs) or
    from a single seed is shown without a CI."""
    if pd.isna(mean):
        return ""
    if abs(mean) >= 1e6:
        return f"{mean:.3e}"
    if float(mean).is_integer() and (pd.isna(ci) or ci == 0):
        return f"{int(mean)}"
    digits = 3 if abs(mean) < 100 else 1
    if 0 < abs(mean) < 0.01:  # e.g. layout alignment ~1e-3: three significant figures
        digits = 2 - int(np.floor(np.log10(abs(mean))))
    return (
        f"{mean:.{digits}f}" if pd.isna(ci) or ci == 0 else f"{mean:.{digits}f} ± {ci:.{digits}f}"
    )


def provenance(df: pd.DataFrame) -> str:
    """The package versions recorded by the runs (one line; several if runs disagree)."""
    cols = sorted(c for c in df.columns if c.startswith("versions."))
    seen = {json.dumps({c[9:]: r[c] for c in cols}, sort_keys=True) for _, r in df.iterrows()}
    return "; ".join(sorted(seen))


def benchmark_table(results: str | Path, out_csv: str | Path) -> pd.DataFrame:
    """Time and memory of every job, from the Snakemake `benchmark:` files under
    results/*/benchmarks/ (one TSV per job, named after its step and wildcards): the CSV has
    one row per job (task, job, step, s, max_rss in MB, cpu_time in s); the Markdown beside
    it sums them per step (a step: the job's name without its seed)."""
    rows = []
    for path in sorted(Path(results).glob("*/benchmarks/*.tsv")):
        last = pd.read_csv(path, sep="\t").iloc[-1]  # `repeat` writes one row per repeat
        rows.append(
            {
                "task": path.parent.parent.name,
                "job": path.stem,
                "step": re.sub(r"_seed\d+$", "", path.stem),
                "s": float(last["s"]),
                "max_rss": pd.to_numeric(last.get("max_rss"), errors="coerce"),
                "cpu_time": pd.to_numeric(last.get("cpu_time"), errors="coerce"),
            }
        )
    if not rows:
        raise FileNotFoundError(f"{results}: no */benchmarks/*.tsv files (run the workflow first)")
    jobs = pd.DataFrame(rows)
    with records.atomic_path(out_csv) as tmp:
        jobs.to_csv(tmp, index=False)
    steps = jobs.groupby(["task", "step"], sort=False).agg(
        jobs=("job", "size"),
        total_s=("s", "sum"),
        max_s=("s", "max"),
        max_rss_mb=("max_rss", "max"),
        cpu_s=("cpu_time", "sum"),
    )
    lines = [
        "# Workflow jobs: time and memory",
        "",
        f"- {len(jobs)} jobs, {jobs['s'].sum():.0f} s of wall time in all (summed over jobs, "
        "which run in parallel), from Snakemake's benchmark files; one row per step",
        "- max_rss: peak resident memory of one job (MB); cpu_s: CPU seconds, all jobs",
        "",
        steps.reset_index().to_markdown(index=False, floatfmt=".1f"),
        "",
    ]
    with records.atomic_path(Path(out_csv).with_suffix(".md")) as tmp:
        tmp.write_text("\n".join(lines))
    return jobs
