"""Table notes every fine-tuning table shares: each run's loop sampler and what the reference
rows (self_fit, best_of_m) and the inference_flops column are, from the runs' own configs."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from graftbench import records
from graftbench.finetuning.task import REFERENCES


def _sampler(loop: dict, cfg: dict) -> str:
    out = f"{loop['scheduler']} {loop['num_steps']} steps, eta {loop['eta']:g}"
    guidance = loop.get("guidance_scale")
    if guidance is None:  # the model's own default (t2i: the SD folder's, or the small model's)
        model = cfg.get("stable_diffusion") or cfg.get("model") or {}
        guidance = model.get("guidance_scale")
    return out if guidance is None else f"{out}, guidance {guidance:g}"


def run_config(task_dir: Path, run: str, seed: int) -> dict:
    """The resolved task config a run was made with (its config.json)."""
    return records.read_json(task_dir / run / f"seed{seed}" / "config.json")


def shared_notes(task_dir: Path, runs: pd.DataFrame) -> list[str]:
    """Notes on each fine-tuning run's loop sampler (read from its own config.json), the
    self_fit and best_of_m references where the table has them, and inference_flops."""
    from graftbench.finetuning.tables import order

    names = sorted(runs["run"].unique(), key=order)
    first = runs.groupby("run")["seed"].min()
    samplers: dict[str, list[str]] = {}
    for run in names:
        if run in REFERENCES:
            continue
        cfg = run_config(task_dir, run, first[run])
        section = "pgraft" if run.startswith("pgraft") and run[6:].isdigit() else run
        samplers.setdefault(_sampler(cfg[section]["loop"], cfg), []).append(run)
    notes = []
    if samplers:
        parts = "; ".join(f"{', '.join(r)}: {s}" for s, r in samplers.items())
        notes.append(
            f"loop samplers (fine-tuning rounds): {parts}. Methods share one sampler unless the "
            "method needs another: DDPO's policy gradient needs a stochastic sampler (eta > 0)"
        )
    if "self_fit" in names:
        notes.append(
            "self_fit: GRAFT's update on all M samples (no selection), with GRAFT's loop, "
            "optimiser and epochs: a GRAFT row reads as its selection gain minus this drift "
            "of fitting the model's own samples"
        )
    if "best_of_m" in names:
        m = run_config(task_dir, "best_of_m", first["best_of_m"])["best_of_m"]["m"]
        notes.append(
            f"best_of_m: no fine-tuning; each evaluation sample is the best of m = {m} samples "
            "of the base by the reward, on the others' conditions (its first draw on their "
            f"noise): it uses the evaluator at inference time, {m} reward queries and {m}x "
            "the base's inference_flops per sample"
        )
    notes.append(
        "inference_flops: FLOPs per evaluation sample (the evaluation sampler's network "
        "calls x FLOPs per call, torch's counter with formulas for fused kernels)"
    )
    return notes
