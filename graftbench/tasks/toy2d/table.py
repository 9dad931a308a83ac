"""The toy2d tables and figures, from the run records the toy2d task wrote.

tables/toy2d.{csv,md}: per run, mean and 95% CI over seeds of the reward, the improvement over
the base of the same seed, the rewarded mode's share, the energy distance to the run's exact
target law (`targets`; two target samples' distance beside it: the level sampling alone
gives), to GRAFT's top-K target, and to the data law (beside two data samples'), drift and
compute. tables/toy2d_inc.{csv,md}: the INC frontier (`inc`).
Figures: reward against queries; P-GRAFT against N_I beside Var[r(x_0) | x_t]; the runs'
points over the data law; INC's distance to the data against FLOPs per sample.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from graftbench import records
from graftbench.config import parse
from graftbench.finetuning.notes import shared_notes
from graftbench.finetuning.tables import (
    COMPUTE,
    load_runs,
    mean_ci,
    plot_reward_vs_queries,
    plt_agg,
    save,
    summarise_runs,
)
from graftbench.methods.inc import energy_distance
from graftbench.tasks.toy2d import data
from graftbench.tasks.toy2d.config import Toy2dConfig
from graftbench.tasks.toy2d.evaluation import POINTS, TARGETS
from graftbench.tasks.toy2d.targets import rule_of

DISTANCES = ["target_energy", "target_null", "graft_target_energy", "data_energy", "data_null"]
VALUES = ["reward", "improvement_pct", "rewarded_mode_share", *DISTANCES, "off_mode_share"]
VALUES += COMPUTE
DATA_SEED = 77_777  # the data sample a seed's runs are compared with: seed + this


def distances(task_dir: Path, runs: pd.DataFrame, cfg: Toy2dConfig) -> pd.DataFrame:
    """Each (run, seed)'s energy distances to its exact target (from the base run's targets of
    that seed), to GRAFT's target and to the data law, with the null levels beside them."""
    n = cfg.evaluate.samples
    rows = []
    for run, seed in runs[["run", "seed"]].itertuples(index=False):
        x = torch.from_numpy(np.load(task_dir / run / f"seed{seed}" / POINTS)["points"])
        targets = np.load(task_dir / "base" / f"seed{seed}" / TARGETS)
        exact = data.sample(cfg.data, 2 * n, torch.Generator().manual_seed(seed + DATA_SEED))
        row = {
            "run": run,
            "seed": seed,
            "data_energy": energy_distance(x, exact[:n]),
            "data_null": energy_distance(exact[n:], exact[:n]),
        }
        if "graft" in targets:
            row["graft_target_energy"] = energy_distance(x, torch.from_numpy(targets["graft"][:n]))
        if rule_of(cfg, run) is not None:
            t = torch.from_numpy(targets[run])
            row["target_energy"] = energy_distance(x, t[:n])
            row["target_null"] = energy_distance(t[n:], t[:n])
        rows.append(row)
    return runs.merge(pd.DataFrame(rows), on=["run", "seed"])


def aggregate(task_dir: Path, table: Path, figures: list[Path], profile: str) -> None:
    """figures: reward-against-queries, P-GRAFT-against-N_I (with Var[r | x_t]) and points."""
    from graftbench.aggregate import provenance, write_table

    cfg = parse(Toy2dConfig, records.read_json(task_dir / "config.json"), "toy2d")
    runs = distances(task_dir, load_runs(task_dir, headline="reward"), cfg)
    summary = summarise_runs(runs, [v for v in VALUES if v in runs])
    d, r = cfg.data, cfg.reward
    notes = [
        f"profile: {profile}; every fine-tuning run spends {int(runs['reward_queries'].max())} "
        "reward queries; base = the pre-trained model",
        f"data: {d.modes} Gaussians (std {d.std:g}) evenly on a circle of radius {d.radius:g}; "
        f"the base saw {d.n_train} points for {cfg.pretrain.steps} optimiser steps (briefly, "
        f"on purpose: its data_energy is its error); reward r(x) = exp(-|x - c|^2 / (2 x "
        f"{r.width:g}^2)), c on the circle at {r.angle:g} degrees",
        f"every run is scored on {cfg.evaluate.samples} points from the evaluation sampler "
        f"(DDIM {cfg.evaluate.num_steps} steps, eta {cfg.evaluate.eta:g}, the loops' too), "
        "the same noise for every run at a seed",
        "target_energy: energy distance to the run's exact target law (GRAFT rules: the base's "
        "law under that sampler reweighted by the rule's acceptance, from one round of M base "
        "samples; best_of_m: m F^(m-1); pgraftN: the accepted trajectories' x_{t_I} continued "
        "by the base; self_fit and base: the base itself; ddpo has none), estimated from "
        f"{cfg.evaluate.target_pool} base trajectories per seed; target_null: two samples of "
        "that target (the level sampling error alone gives, ~0; the estimator can be "
        "negative); graft_target_energy: to GRAFT's top-K target; data_energy: to the data "
        "law, data_null beside it",
        "rewarded_mode_share: points whose nearest mode is the one nearest c; off_mode_share: "
        f"points farther than {data.OFF_MODE_STDS:g} stds from every mode (the data law's: "
        f"{100 * math.exp(-(data.OFF_MODE_STDS**2) / 2):.1f}%), the mass between the modes, "
        "which energy distance weighs lightly; drift: RMS distance from the base's point of "
        "the same noise",
        "mean ± 95% CI (Student t) over seeds (fine-tuning, evaluation and target noise; one "
        "pre-trained model); pgraftN: P-GRAFT with the switch at sampler state N_I = N",
        *shared_notes(task_dir, runs),
        f"versions: {provenance(runs)}",
    ]
    write_table(summary, table, "Toy2d: fine-tuned laws against their exact targets", notes)
    plot_reward_vs_queries(task_dir, runs, figures[0], "reward")
    plot_bias_variance(task_dir, runs, figures[1], cfg.evaluate.num_steps)
    plot_points(task_dir, runs, cfg, figures[2])


def plot_bias_variance(task_dir: Path, runs: pd.DataFrame, path: Path, steps: int) -> None:
    """Left: the share of Var[r(x_0)] left given x_t, per sampler state (variance.json).
    Right: P-GRAFT's distance to its own target (fitting) and to GRAFT's (fitting plus the
    ranking noise), and its reward, against N_I; GRAFT at N_I = N."""

    plt = plt_agg()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    var = records.read_json(task_dir / "variance.json")
    v = pd.DataFrame(var["rows"])
    total = var["reward_variance"]
    left.errorbar(v["state"], v["share_of_variance"], yerr=v["ci95"] / total, marker="o", ms=3)
    left.set_xlabel("sampler state i (0 = x_T, N = x_0)")
    left.set_ylabel("E Var[r(x_0) | x_t] / Var[r(x_0)]")
    left.set_title(
        f"Reward variance left given x_t ({var['states']} states x {var['rollouts']} rollouts)",
        fontsize=9,
    )
    pg = runs[runs["method"] == "pgraft"].copy()
    graft = runs[runs["run"] == "graft"].assign(intermediate_step=steps)
    both = pd.concat([pg, graft])
    twin = right.twinx()
    for col, ax, colour, label in (
        ("target_energy", right, "C0", "to its own target (fitting)"),
        ("graft_target_energy", right, "C1", "to GRAFT's target (fitting + ranking noise)"),
        ("reward", twin, "C2", "reward (right axis)"),
    ):
        if col not in both or both[col].isna().all():
            continue
        mean_ci(ax, both.groupby("intermediate_step")[col], color=colour, label=label)
    right.set_yscale("symlog", linthresh=1e-3)
    right.set_xlabel(f"N_I (P-GRAFT's switch state; {steps} = GRAFT)")
    right.set_ylabel("energy distance")
    twin.set_ylabel("reward")
    right.set_title("P-GRAFT against N_I (mean ± 95% CI over seeds)", fontsize=9)
    handles = right.get_legend_handles_labels()
    extra = twin.get_legend_handles_labels()
    right.legend(handles[0] + extra[0], handles[1] + extra[1], fontsize=7, loc="center left")
    save(fig, path)


def plot_points(task_dir: Path, runs: pd.DataFrame, cfg: Toy2dConfig, path: Path) -> None:
    """One panel per run (its first seed): its points over the data law's density."""
    from graftbench.finetuning.tables import order

    plt = plt_agg()
    names = sorted(runs["run"].unique(), key=order)
    cols = min(5, len(names))
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.4 * cols, 2.4 * rows), squeeze=False)
    lim = cfg.data.radius + 4 * cfg.data.std
    grid = torch.linspace(-lim, lim, 120)
    xx, yy = torch.meshgrid(grid, grid, indexing="xy")
    dens = data.log_density(cfg.data, torch.stack([xx.flatten(), yy.flatten()], 1)).exp()
    seed = int(runs["seed"].min())
    for ax, run in zip(axes.flat, names, strict=False):
        pts = np.load(task_dir / run / f"seed{seed}" / POINTS)["points"][:1000]
        ax.contour(xx, yy, dens.view(120, 120), levels=4, colors="0.7", linewidths=0.6)
        ax.scatter(pts[:, 0], pts[:, 1], s=1, alpha=0.5)
        ax.set(xlim=(-lim, lim), ylim=(-lim, lim), xticks=[], yticks=[], aspect="equal")
        ax.set_title(run, fontsize=8)
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    fig.suptitle(f"1,000 points per run (seed {seed}); grey: the data law", fontsize=9)
    save(fig, path)


def inc_table(task_dir: Path, table: Path, figures: list[Path], profile: str) -> None:
    """tables/toy2d_inc from inc/seed*.json, and the frontier figure (figures[0])."""
    from graftbench.aggregate import summarise, write_table

    cfg = parse(Toy2dConfig, records.read_json(task_dir / "config.json"), "toy2d")
    runs = [records.read_json(p) for p in sorted((task_dir / "inc").glob("seed*.json"))]
    rows = pd.DataFrame([{**r, "seed": run["seed"]} for run in runs for r in run["rows"]])
    keys = ["sampler", "base_steps", "corrector_steps"]
    values = [
        c
        for c in (
            "energy",
            "off_mode_share",
            "energy_null",
            "flops",
            "noise_energy_before",
            "noise_energy_after",
            "noise_energy_null",
            "noise_angle_tv_before",
            "noise_angle_tv_after",
            "noise_angle_tv_null",
        )
        if c in rows
    ]
    summary = summarise(rows, keys, values).sort_values(["flops_mean", "sampler"])
    stops = {s: [run["correctors"][s]["stopped_at"] for run in runs] for s in runs[0]["correctors"]}
    notes = [
        f"profile: {profile}; energy: energy distance of {cfg.evaluate.samples} "
        "points to fresh exact draws of the data law; energy_null: two data samples' (the "
        "level sampling alone gives)",
        "base: deterministic DDIM (the Euler sampler of its flow view); base+inc: a corrector "
        "flow N(0, I) -> inverted noise, then the base; oracle: the inverted training points' "
        "own noise through the base (a perfect corrector's level)",
        f"all {cfg.data.n_train} training points inverted, perturbed by the config's invert.perturb first; the "
        "corrector trained until its held-out loss stopped falling: stopped at steps "
        + "; ".join(f"{s} base steps: {v}" for s, v in stops.items()),
        f"off_mode_share: points farther than {data.OFF_MODE_STDS:g} stds from every mode "
        f"(the data law's: {100 * math.exp(-(data.OFF_MODE_STDS**2) / 2):.1f}%)",
        "noise_energy_before / after: the held-out inverted noise against N(0, I) / against "
        "the corrector's samples; noise_angle_tv_before / after: total variation between the "
        "angle laws (32 sectors) of all the inverted noise and N(0, I) / the corrector's "
        f"{cfg.evaluate.samples} samples (the inverted noise is sectored by the base's basins "
        "of the modes), _null: two N(0, I) samples of those sizes; flops: per sample, base and corrector calls together",
        "mean ± 95% CI (Student t) over seeds (corrector training and sampling noise)",
    ]
    write_table(summary, table, "Toy2d: inverse noise correction against the exact data law", notes)
    plot_frontier(rows, figures[0])


def plot_frontier(rows: pd.DataFrame, path: Path) -> None:
    """Energy distance to the data law (left) and the off-mode share (right) against FLOPs per
    sample, mean ± CI over seeds; the data law's own levels dashed."""

    plt = plt_agg()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    data_level = {
        "energy": rows["energy_null"].mean(),
        "off_mode_share": math.exp(-(data.OFF_MODE_STDS**2) / 2),
    }
    for ax, col in zip(axes, ("energy", "off_mode_share"), strict=True):
        for (kind, c), sub in rows.groupby(["sampler", "corrector_steps"]):
            mean_ci(
                ax,
                sub.groupby("flops")[col],
                marker="o" if kind == "base" else "s",
                ls="-" if kind == "base" else ":",
                label=kind if kind != "base+inc" else f"base + INC, {c} corrector steps",
            )
        ax.axhline(data_level[col], color="black", lw=1, ls="--", label="the data law's level")
        ax.set_xscale("log")
        ax.set_xlabel("FLOPs per sample")
    axes[0].set_yscale("symlog", linthresh=1e-3)
    axes[0].set_ylabel("energy distance to the data law")
    axes[1].set_ylabel(f"share of points > {data.OFF_MODE_STDS:g} stds from every mode")
    axes[1].legend(fontsize=7)
    fig.suptitle("INC on toy2d against the exact data law (mean ± 95% CI over seeds)", fontsize=10)
    save(fig, path)
