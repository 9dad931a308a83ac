"""Inverse noise correction on the unconditional task (one function per workflow rule).

invert          -> inc/invert_{steps}.pt (inverted noise) + .json (iterations, residuals,
                   reconstruction error, moments and energy distance to N(0, I))
train_corrector -> inc/corrector_{steps}.pt (EMA weights) + .json (diagnostics of the
                   corrector's law against held-out inverted noise, per corrector step count;
                   with inc.train.eval_every, where early stopping stopped) and then
                   _heldout.jsonl (train and held-out loss at each evaluation)
sample          -> `task.sample` with a corrector
aggregate       -> tables/inc.{csv,md} and the FID-against-FLOPs figure, base beside base+INC
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from graftbench import records
from graftbench.config import to_dict
from graftbench.tasks.unconditional.config import UnconditionalConfig
from graftbench.tasks.unconditional.task import CORRECTOR_KIND, load_model

NOISE_KIND = "inc noise"  # the checkpoint kind of inc/invert_{steps}.pt

# The paper's anchors (INC paper, CelebA-HQ 256 and LSUN-Church 256; 65M-parameter base and
# 16M corrector, 200 Euler steps each), shown beside our table for scale, never mixed into it.
PAPER_ANCHORS = [
    "paper anchor, CelebA-HQ 256: FID 13.39 (base, 200 steps) -> 8.02 (base + INC, 200 + 200 "
    "corrector steps); FLOPs/image 1.374e12 -> 1.806e12 (65M base, 16M corrector)",
    "paper anchor, LSUN-Church 256: FID 8.63 -> 7.26 at the same FLOPs/image",
]


def _train_images(data: Path, n: int) -> torch.Tensor:
    """The first n training images (all if n = 0) in the model's [-1, 1] scale, (n, C, H, W);
    the training split is already shuffled by prepare_data, so the first n are a random draw."""
    images = np.load(data / "train.npz")["images"]
    images = images[:n] if n else images
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1


def invert(
    cfg: UnconditionalConfig,
    data: Path,
    model_path: Path,
    steps: int,
    out: Path,
    device: str = "cpu",
) -> dict:
    """Invert training images through the base Euler sampler with `steps` steps (the
    sampler the table evaluates, same sigma grid) on `device` and store the noise at `out`."""
    from graftbench.methods.inc import invert_data, noise_diagnostics
    from graftbench.sampling.flow import flow_sigmas

    model = load_model(model_path, device)
    x = _train_images(data, cfg.inc.invert.n_images).to(device)
    g = torch.Generator().manual_seed(cfg.inc.train.seed)  # on the CPU: same draws everywhere
    t0 = time.perf_counter()
    sigmas = flow_sigmas(steps, cfg.sample.shift, device=device)
    inv = invert_data(model.velocity, x, sigmas, cfg.inc.invert, g)
    wall = time.perf_counter() - t0
    noise = inv.noise.cpu()  # diagnostics draw their Gaussians on the CPU; stored as CPU tensors
    summary = {
        "steps": steps,
        "n_images": len(x),
        "nfe_per_image": inv.nfe,
        "wall_s": wall,
        "iterations_max": inv.iterations.amax(0).tolist(),  # per Euler step, from sigma = 1
        "residual_max": inv.residual.amax(0).tolist(),
        "recon_rms": inv.recon_rms,
        "recon_max": inv.recon_max,
        "diagnostics": noise_diagnostics(noise, g),
        "device": device,
        "versions": records.versions(),
    }
    records.save_checkpoint(out, {"noise": noise, "steps": steps}, to_dict(cfg), kind=NOISE_KIND)
    records.write_json(out.with_suffix(".json"), summary)
    return summary


def train_corrector(
    cfg: UnconditionalConfig,
    noise_path: Path,
    out: Path,
    log: Path | None = None,
    device: str = "cpu",
) -> dict:
    """Flow matching from N(0, I) to the inverted noise, minus a held-out share on which the
    corrector's law is then compared with the inverted noise it never saw. Trains and
    samples on `device`; the diagnostics run on the CPU."""
    from graftbench.methods.inc import corrector_loss, noise_diagnostics
    from graftbench.models.pixel import PixelFlowAdapter
    from graftbench.sampling.flow import flow_sigmas, solve_flow
    from graftbench.train import Validation, fit

    noise = records.load_checkpoint(noise_path, NOISE_KIND)["noise"]
    n_hold = int(round(cfg.inc.invert.holdout * len(noise)))
    held, train = noise[:n_hold], noise[n_hold:]
    tc = cfg.inc.train
    torch.manual_seed(tc.seed)
    corrector = PixelFlowAdapter.from_config(cfg.inc.model)  # initialised on the CPU, then moved
    corrector.network.to(device)
    loss = corrector_loss(corrector.denoise, train.to(device), tc.batch_size, tc.sigma_sampling)
    validation = None
    if tc.eval_every > 0 and n_hold > 0:
        curve = heldout_curve_path(out)
        if not out.with_name(out.name + ".partial").exists():  # a resumed run appends
            curve.unlink(missing_ok=True)
        validation = Validation(
            loss=_heldout_scorer(held.to(device), tc),
            every=tc.eval_every,
            patience=tc.patience,
            min_delta=tc.min_delta,
            log=curve,
        )
    t0 = time.perf_counter()
    # the checkpoint's "model" key is the corrector's own UNet config, so load_model reads it
    ema = fit(
        corrector.network,
        loss,
        tc,
        out,
        {"model": to_dict(cfg.inc.model), "task": to_dict(cfg)},
        log,
        validation,
        kind=CORRECTOR_KIND,
    )
    wall = time.perf_counter() - t0
    corrector.network = ema.eval()
    g = torch.Generator().manual_seed(tc.seed + 1)
    diagnostics = {}
    if n_hold > 1:
        eps = torch.randn(held.shape, generator=g).to(device)
        for steps in cfg.inc.corrector_steps:
            sigmas = flow_sigmas(steps, cfg.sample.shift, device=device)
            z, _ = solve_flow(corrector.velocity, eps, sigmas)
            diagnostics[str(steps)] = noise_diagnostics(held, g, corrected=z.cpu())
    summary = {
        "n_train": len(train),
        "n_heldout": n_hold,
        "train_wall_s": wall,
        "params": sum(p.numel() for p in ema.parameters()),
        "diagnostics": diagnostics,
        "device": device,
    }
    if validation is not None:  # best: step and held-out loss of the weights kept
        summary["early_stopping"] = {**validation.best, "max_steps": tc.steps}
    records.write_json(out.with_suffix(".json"), summary)
    return summary


def _stop_note(stop: dict | None) -> str:
    if not stop:
        return ""
    end = f"stopped at step {stop['stopped_at']}" if "stopped_at" in stop else "did not stop"
    return (
        f" (early stopping: best held-out loss {stop['loss']:.4f} at step {stop['step']}, "
        f"kept; {end}; max {stop['max_steps']})"
    )


def heldout_curve_path(corrector: Path) -> Path:
    """inc/corrector_{steps}_heldout.jsonl, beside the corrector checkpoint."""
    return corrector.with_name(corrector.stem + "_heldout.jsonl")


def _heldout_scorer(held: torch.Tensor, tc) -> Callable[[torch.nn.Module], float]:
    """network -> the corrector's flow-matching loss on the held-out noise, same draws each
    call (seeded apart from training's generator, which it leaves alone)."""
    from graftbench.methods.inc import heldout_loss

    def score(network: torch.nn.Module) -> float:
        def denoise(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return network(x, t).sample

        return heldout_loss(denoise, held, tc.eval_draws, 500, tc.sigma_sampling, tc.seed + 2)

    return score


def aggregate(task_dir: Path, table: Path, figure: Path, profile: str) -> None:
    """tables/inc.{csv,md}: every base step count beside base + INC at each (base steps,
    corrector steps), FID against FLOPs, with the inversion and corrector diagnostics."""
    import pandas as pd

    from graftbench.aggregate import collect, provenance, summarise, write_table
    from graftbench.tasks.unconditional.table import plot_fid_vs_flops, real_data_floor

    runs = collect(task_dir)
    runs["corrector_steps"] = runs.get("corrector_steps", 0)
    runs["corrector_steps"] = runs["corrector_steps"].fillna(0).astype(int)
    fid_cols = sorted(c for c in runs.columns if c.startswith("fid.") and not c.startswith("fid_"))
    summary = summarise(
        runs,
        ["method", "steps", "corrector_steps"],
        ["nfe", "flops_per_image", *fid_cols, "wall_s_per_image"],
    )
    extra = []
    for _, row in summary.iterrows():
        inv_path = task_dir / "inc" / f"invert_{row['steps']}.json"
        cor_path = task_dir / "inc" / f"corrector_{row['steps']}.json"
        if row["method"] != "inc" or not inv_path.exists() or not cor_path.exists():
            extra.append({})
            continue
        inv, cor = records.read_json(inv_path), records.read_json(cor_path)
        after = cor["diagnostics"].get(str(row["corrector_steps"]), {})
        extra.append(
            {
                "invert_nfe_per_image": inv["nfe_per_image"],
                "invert_recon_rms": inv["recon_rms"],
                "energy_to_gaussian": after.get("energy_before"),
                "energy_to_corrector": after.get("energy_after"),
                "energy_null": after.get("energy_null"),
            }
        )
    summary = pd.concat([summary, pd.DataFrame(extra, index=summary.index)], axis=1)
    floor, floor_notes = real_data_floor(task_dir, fid_cols)
    inc = runs[runs["method"] == "inc"]
    costs = []
    for steps in sorted(inc["steps"].unique()):
        inv = records.read_json(task_dir / "inc" / f"invert_{steps}.json")
        cor = records.read_json(task_dir / "inc" / f"corrector_{steps}.json")
        costs.append(
            f"one-off cost at {steps} base steps: inversion of {inv['n_images']} training images, "
            f"{inv['nfe_per_image']:.1f} NFE/image, {inv['wall_s']:.0f} s (reconstruction RMS "
            f"{inv['recon_rms']:.4f}, max {inv['recon_max']:.3f}); corrector ({cor['params']} "
            f"parameters) trained on {cor['n_train']} of them in {cor['train_wall_s']:.0f} s"
            + _stop_note(cor.get("early_stopping"))
        )
    notes = [
        f"profile: {profile}; FID of {int(runs['n_samples'].iloc[0])} samples against the "
        f"{int(runs['n_reference'].iloc[0])} held-out test images (never trained on); Euler sampler",
        f"FID back-ends: {', '.join(c[4:] for c in fid_cols)} (trained-cnn is a classifier "
        "trained by the workflow on the training split: not comparable with published Inception FIDs)",
        "method inc = corrector flow (corrector_steps Euler steps) then the base (steps); FLOPs "
        "per image count both networks; every seed starts base and inc from the same noise",
        "energy_to_gaussian / energy_to_corrector: energy distance of held-out inverted noise "
        "(never trained on) to N(0, I) samples / to the corrector's samples; energy_null: two "
        "N(0, I) samples of that size (the sampling-noise level)",
        *costs,
        *PAPER_ANCHORS,
        f"versions: {provenance(runs)}",
    ]
    write_table(summary, table, "Inverse noise correction: FID against FLOPs", notes + floor_notes)
    labelled = summary.assign(
        method=[
            m if m == "base" else f"inc, base {s} steps"
            for m, s in zip(summary["method"], summary["steps"], strict=True)
        ],
        steps=summary["steps"].where(summary["method"] == "base", summary["corrector_steps"]),
        solver="euler",
    )
    plot_fid_vs_flops(
        labelled,
        floor,
        fid_cols,
        figure,
        title="base vs base + INC (labels: base or corrector steps)",
    )
