"""The unconditional task's table and figure: FID against FLOPs of the base flow at each step
count, from the run records `sample` and `evaluate` wrote."""

from __future__ import annotations

from pathlib import Path

from graftbench import records


def aggregate(task_dir: Path, table: Path, figure: Path, profile: str) -> None:
    """tables/unconditional.{csv,md} and the FID-against-FLOPs figure. The real-data floor
    (FID of a training subset against the test set) is read from task_dir/real_data_eval.json."""

    from graftbench.aggregate import collect, provenance, summarise, write_table

    runs = collect(task_dir)
    runs = runs[runs["method"] == "base"]  # base + INC runs have their own table (inc)
    fid_cols = sorted(c for c in runs.columns if c.startswith("fid.") and not c.startswith("fid_"))
    floor, floor_notes = real_data_floor(task_dir, fid_cols)
    summary = summarise(
        runs,
        ["method", "solver", "steps"],
        ["nfe", "flops_per_image", *fid_cols, "wall_s_per_image"],
    )
    notes = [
        f"profile: {profile}; FID of {int(runs['n_samples'].iloc[0])} samples against the "
        f"{int(runs['n_reference'].iloc[0])} held-out test images (never trained on)",
        f"FID back-ends: {', '.join(c[4:] for c in fid_cols)} (trained-cnn is a classifier "
        "trained by the workflow on the training split: not comparable with published Inception FIDs)",
        "mean ± 95% CI (Student t) over sampling seeds of one pre-trained model; every seed "
        "starts all step counts from the same noise",
        f"FLOPs: torch FlopCounterMode, per network evaluation x NFE; device {runs['device'].iloc[0]}",
        f"versions: {provenance(runs)}",
    ]
    write_table(summary, table, "Unconditional generation: FID against FLOPs", notes + floor_notes)
    plot_fid_vs_flops(summary, floor, fid_cols, figure)


def real_data_floor(task_dir: Path, fid_cols: list[str]):
    """(one-row frame of task_dir/real_data_eval.json, or empty; a table note per FID column):
    the FID of a training subset against the test set, below which no model's FID can go."""
    import pandas as pd

    path = task_dir / "real_data_eval.json"
    floor = pd.json_normalize([records.read_json(path)]) if path.exists() else pd.DataFrame()
    notes = [
        f"real-data floor ({col}): train subset vs test = {floor[col].iloc[0]:.3f}"
        for col in fid_cols
        if col in floor
    ]
    return floor, notes


def plot_fid_vs_flops(
    summary, floor, fid_cols, path: Path, title: str = "FID vs FLOPs (labels: steps)"
) -> None:
    """One panel per FID back-end: a line per (method, solver) of `summary`, labelled by
    its `steps` column, with the real-data floor as a dashed line."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(fid_cols), figsize=(5 * len(fid_cols), 3.8), squeeze=False)
    for ax, col in zip(axes[0], fid_cols, strict=True):
        for (method, solver), sub in summary.groupby(["method", "solver"]):
            sub = sub.sort_values("flops_per_image_mean")
            ax.errorbar(
                sub["flops_per_image_mean"],
                sub[f"{col}_mean"],
                yerr=sub[f"{col}_ci95"],
                marker="o",
                capsize=3,
                label=f"{method} ({solver})",
            )
            for _, r in sub.iterrows():
                ax.annotate(
                    f"{int(r['steps'])}",
                    (r["flops_per_image_mean"], r[f"{col}_mean"]),
                    textcoords="offset points",
                    xytext=(4, 4),
                    fontsize=8,
                )
        if col in floor:
            ax.axhline(floor[col].iloc[0], color="grey", ls="--", label="real data (floor)")
        ax.set_xscale("log")
        ax.set_yscale("log")  # FID spans orders of magnitude between 1 and many steps
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel("FLOPs per image")
        ax.set_ylabel(f"FID ({col[4:]})")
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with records.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
