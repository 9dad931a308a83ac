"""The compute columns of a run's metrics.json: budget, sampler and training FLOPs, time."""

from __future__ import annotations

import time
from typing import Any

import torch

from graftbench import records
from graftbench.models.base import FinetuneModel


def flops_per_call(model: FinetuneModel, condition: Any) -> int:
    """FLOPs of one network evaluation for one sample at `condition` (torch's counter; the
    condition encoder runs once per condition, not per step, and is left out)."""
    from graftbench.flops import count_flops

    device = next(model.network.parameters()).device
    x = model.initial_state(1, torch.Generator(device=device).manual_seed(0), device)
    t = torch.zeros(1, dtype=torch.long, device=device)
    cond = model.encode_condition([condition])
    return count_flops(lambda: model.denoise(x, t, cond))


def run_record(
    rows: list[dict],
    run: str,
    seed: int,
    n_i: int | None,
    f_call: int,
    calls: int,
    t0: float,
    finetune_s: float,
    device: str,
) -> dict:
    """metrics.json of a fine-tuned run: budget, compute and loop rewards. f_call: FLOPs of
    one network call per sample; calls: network calls per sampler evaluation (2 for a
    guided pair). DDPO differentiates the sampler as it ran (guided pairs included); GRAFT
    and P-GRAFT train the plain denoising loss, one call per example."""
    examples = sum(r.get("train_examples", 0) for r in rows)
    train_calls = calls if run == "ddpo" else 1
    return {
        "run": run,
        "method": run.rstrip("0123456789"),
        "seed": seed,
        "intermediate_step": n_i,
        "t_intermediate": rows[-1].get("t_intermediate"),
        "reward_queries": rows[-1]["reward_queries"],
        "rounds": len(rows),
        "sampler_nfe": rows[-1]["sampler_nfe"],
        "flops_per_call": f_call,
        "sampler_flops": rows[-1]["sampler_nfe"] * calls * f_call,
        # forward + backward ~ 3 forwards (the usual estimate: backward costs two)
        "train_flops": 3 * examples * train_calls * f_call,
        "train_examples": examples,
        "loop_reward_first": rows[0]["reward_mean"],
        "loop_reward_last": rows[-1]["reward_mean"],
        "sample_s": sum(r["sample_s"] for r in rows),
        "train_s": sum(r["train_s"] for r in rows),
        "finetune_s": finetune_s,
        "wall_s": time.perf_counter() - t0,
        "device": device,
        "versions": records.versions(),
    }


def base_record(run: str, seed: int, f_call: int, nfe: int, t0: float, device: str) -> dict:
    """metrics.json of a run without fine-tuning (the base; best_of_m): no fine-tuning
    compute; inference_flops: FLOPs per evaluation sample, `nfe` network calls of f_call."""
    return {
        "run": run,
        "method": run,
        "seed": seed,
        "reward_queries": 0,
        "sampler_nfe": 0,
        "sampler_flops": 0,
        "train_flops": 0,
        "flops_per_call": f_call,
        "inference_flops": nfe * f_call,
        "wall_s": time.perf_counter() - t0,
        "device": device,
        "versions": records.versions(),
    }
