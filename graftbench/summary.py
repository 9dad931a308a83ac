"""`graftbench summary`: a profile's "what reproduces" table (graftbench/reproduces.py), the
headline figure, a short table per task, and the generated blocks of README.md and
BENCHMARKS.md, all read from the tables the workflow wrote.

A generated block sits between `<!-- summary:NAME -->` and `<!-- /summary:NAME -->` in a
Markdown file; `--update FILE` rewrites every block FILE holds (NAME: reproduces, results),
so the numbers in the README and the first part of BENCHMARKS.md are never typed by hand.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from graftbench import records
from graftbench.config import InputError

if TYPE_CHECKING:  # pandas is imported where it is used: `graftbench --help` stays quick
    import pandas as pd

# the columns of each task's short table (results section): the headline and what explains it;
# the full table (every column) is linked beside it
SHORT = {
    "t2i": ["run", "heldout_reward", "improvement_pct", "train_change", "heldout_accuracy",
            "drift", "reward_queries", "inference_flops"],
    "layout": ["run", "heldout_reward", "improvement_pct", "fid", "max_iou", "drift",
               "reward_queries", "inference_flops"],
    "molecule": ["run", "reward", "improvement_pct", "validity", "uniqueness", "novelty", "fcd",
                 "reward_queries", "inference_flops"],
    "toy2d": ["run", "reward", "improvement_pct", "target_energy", "target_null", "data_energy",
              "off_mode_share", "reward_queries"],
    "unconditional": ["solver", "steps", "nfe", "flops_per_image", "fid.*"],
    "inc": ["method", "steps", "corrector_steps", "flops_per_image", "fid.*",
            "energy_to_gaussian", "energy_to_corrector", "energy_null"],
    "toy2d_inc": ["sampler", "base_steps", "corrector_steps", "flops", "energy",
                  "off_mode_share"],
}  # fmt: skip
FIGURE_RUNS_LAST = "best_of_m"  # the reference without fine-tuning: drawn grey, last


def short_table(table: pd.DataFrame, columns: list[str]) -> str:
    """`columns` of a summary table (mean ± CI where it has them) as Markdown."""
    import pandas as pd

    from graftbench.aggregate import mean_ci_text

    out = {}
    names = [c[: -len("_mean")] for c in table.columns if c.endswith("_mean")]
    for col in columns:
        matches = [n for n in names if re.fullmatch(col.replace(".", r"\.").replace("*", ".*"), n)]
        for name in matches or [col]:
            if f"{name}_mean" in table:
                ci = table.get(f"{name}_ci95", pd.Series([float("nan")] * len(table)))
                out[name] = [
                    mean_ci_text(m, c) for m, c in zip(table[f"{name}_mean"], ci, strict=True)
                ]
            elif name in table:
                out[name] = table[name].astype(str).tolist()
    return pd.DataFrame(out).to_markdown(index=False, disable_numparse=True) + "\n"


def job_times(jobs: pd.DataFrame) -> str:
    """Jobs, job-minutes and the longest job per task, from tables/benchmarks.csv (one row per
    job; jobs run in parallel, so job-minutes exceed the run's wall time)."""
    per_task = jobs.groupby("task", sort=True)["s"].agg(["size", "sum", "max"])
    rows = [
        f"| {task} | {int(n)} | {total / 60:.1f} | {longest / 60:.1f} |"
        for task, (n, total, longest) in per_task.iterrows()
    ]
    return "\n".join(
        [
            "Time per task, from Snakemake's benchmark file of each job:",
            "",
            "| task | jobs | job-minutes | longest job (min) |",
            "| --- | --- | --- | --- |",
            *rows,
            f"| all | {len(jobs)} | {jobs['s'].sum() / 60:.1f} | {jobs['s'].max() / 60:.1f} |",
            "",
        ]
    )


def results_section(tables: dict[str, pd.DataFrame], folder: Path, relative_to: Path) -> str:
    """Per table: its short table, a link to the full one and its figures (paths relative to
    the file the block goes in)."""
    from graftbench.reproduces import TASK_OF

    figures = folder.parent / "figures"
    parts = [job_times(tables["benchmarks"])] if "benchmarks" in tables else []
    for name, columns in SHORT.items():
        if name not in tables:
            continue
        link = os.path.relpath(folder / f"{name}.md", relative_to)
        pngs = sorted(figures.glob(f"{name}_*.png"))
        if name == "toy2d":  # toy2d_inc_*.png belong to the toy2d_inc table
            pngs = [p for p in pngs if not p.stem.startswith("toy2d_inc_")]
        shown = ", ".join(f"[{p.stem}]({os.path.relpath(p, relative_to)})" for p in pngs)
        parts += [
            f"**{name}** ({TASK_OF.get(name, name)} task; [every column]({link})"
            + (f"; figures: {shown}" if shown else "")
            + ")",
            "",
            short_table(tables[name], columns),
        ]
    return "\n".join(parts)


def headline_figure(tables: dict[str, pd.DataFrame], path: Path) -> None:
    """Every fine-tuning run's change of its task's headline reward over the base of the same
    seed (%): mean and 95% CI over seeds, one panel per task."""
    from graftbench.finetuning.tables import order, plt_agg, save

    plt = plt_agg()
    names = [t for t in ("t2i", "layout", "molecule", "toy2d") if t in tables]
    if not names:
        raise InputError("no fine-tuning table (t2i, layout, molecule, toy2d) to plot")
    width = max(3.2 * len(names), 8.0)  # room for the title over one or two panels too
    fig, axes = plt.subplots(1, len(names), figsize=(width, 3.6), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        table = tables[name][tables[name]["run"] != "base"]
        runs = sorted(table["run"], key=order)
        rows = table.set_index("run").loc[runs]
        y = list(range(len(runs)))[::-1]
        colours = ["dimgray" if r == FIGURE_RUNS_LAST else "C0" for r in runs]
        ci = rows["improvement_pct_ci95"].fillna(0)
        for yi, m, c, colour in zip(y, rows["improvement_pct_mean"], ci, colours, strict=True):
            ax.errorbar(m, yi, xerr=c, fmt="o", color=colour, capsize=3, ms=4)
        ax.axvline(0, color="black", ls="--", lw=1)
        ax.set_yticks(y, runs, fontsize=8)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("change over the base (%)", fontsize=8)
    fig.suptitle(
        "Headline reward of each fine-tuned model against the base of the same seed\n"
        "(mean and 95% CI over seeds; grey: best_of_m, the base's best of m samples)",
        fontsize=9,
    )
    save(fig, path, rect=(0, 0, 1, 0.9))


def blocks(folder: Path, profile: str, relative_to: Path) -> dict[str, str]:
    """The generated blocks' contents from a tables folder, links relative to `relative_to`
    (the folder of the Markdown file they go in)."""
    from graftbench.reproduces import load_tables, reproduces_table

    tables = load_tables(folder)
    return {
        "reproduces": reproduces_table(tables, profile),
        "results": results_section(tables, Path(folder).resolve(), relative_to),
    }


def update_blocks(path: Path, blocks: dict[str, str]) -> list[str]:
    """Replace the content of every `<!-- summary:NAME -->` block of `path` whose NAME is in
    `blocks`; returns the names replaced."""
    text = path.read_text()
    done = []
    for name, content in blocks.items():
        pattern = re.compile(rf"(<!-- summary:{name} -->\n).*?(<!-- /summary:{name} -->)", re.S)
        if pattern.search(text):
            text = pattern.sub(lambda m, c=content: m.group(1) + c + m.group(2), text)
            done.append(name)
    if not done:
        raise InputError(f"{path}: no <!-- summary:NAME --> block ({', '.join(blocks)})")
    with records.atomic_path(path) as tmp:
        tmp.write_text(text)
    return done


def cmd_summary(args) -> None:
    from graftbench.reproduces import load_tables, reproduces_table

    folder = Path(args.tables or Path(args.results) / args.profile / "tables")
    tables = load_tables(folder)
    table = reproduces_table(tables, args.profile)
    if args.out:
        with records.atomic_path(Path(args.out)) as tmp:
            tmp.write_text(f"# What reproduces ({args.profile} profile)\n\n{table}")
    if args.figure:
        headline_figure(tables, Path(args.figure))
    for target in args.update or []:
        update_blocks(Path(target), blocks(folder, args.profile, Path(target).resolve().parent))
    print(table)
    if args.all:
        for md in sorted(folder.glob("*.md")):
            print(md.read_text())


def add_verb(sub) -> None:
    v = sub.add_parser(
        "summary",
        help="the 'what reproduces' table of a profile's results (and its headline figure)",
    )
    v.set_defaults(fn=cmd_summary)
    v.add_argument("--results", default="results", help="results root (config key `results`)")
    v.add_argument("--profile", default="cpu", help="smoke, cpu, paper, ...")
    v.add_argument("--tables", help="a tables folder (default: RESULTS/PROFILE/tables)")
    v.add_argument("--out", help="also write the table to this Markdown file")
    v.add_argument("--figure", help="also draw the headline figure to this PNG")
    v.add_argument(
        "--update",
        action="append",
        help="rewrite the generated blocks (<!-- summary:NAME -->) of this Markdown file; "
        "repeatable",
    )
    v.add_argument("--all", action="store_true", help="then print every table in full")
