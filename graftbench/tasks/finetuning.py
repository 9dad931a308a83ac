"""What every reward fine-tuning task (t2i, layout) does the same way around the shared loop:
build a run's method from its name, the sampler segments it is evaluated with, the loop with
its held-out curve, and the run record's compute columns.

A task config here is any dataclass with `graft`, `ddpo` and `pgraft` (a `PGraftSweep`)
sections and an `evaluate.curve_every`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from graftbench import records
from graftbench.config import ConfigError
from graftbench.distributed import is_writer


def check_methods(cfg, task: str) -> None:
    """The rules every fine-tuning task config obeys, naming the key: the base is among the
    methods (improvement and drift are measured against it), every method spends the same
    reward budget, and P-GRAFT's loop has the evaluation sampler's steps (its switch N_I is
    a state index of that grid)."""
    if "base" not in cfg.methods:
        raise ConfigError(
            f"{task}.methods: must include 'base' (improvement and drift are measured against it)"
        )
    budgets = {m: getattr(cfg, m).loop.reward_budget for m in cfg.methods if m != "base"}
    if len(set(budgets.values())) > 1:
        (m0, b0), *rest = budgets.items()
        m1, b1 = next(kv for kv in rest if kv[1] != b0)
        raise ConfigError(
            f"{task}.{m1}.loop.reward_budget: {b1} differs from {task}.{m0}"
            f".loop.reward_budget ({b0}); methods are compared at equal reward "
            "queries"
        )
    steps = cfg.evaluate.num_steps
    if "pgraft" in cfg.methods and cfg.pgraft.loop.num_steps != steps:
        raise ConfigError(
            f"{task}.pgraft.loop.num_steps: {cfg.pgraft.loop.num_steps} must "
            f"equal {task}.evaluate.num_steps ({steps}): P-GRAFT switches models "
            "at a state index of that grid"
        )


def run_names(cfg) -> list[str]:
    """A task's run names in table order: its methods, P-GRAFT expanded to pgraft{N_I} for
    each N_I of the sweep (e.g. base, graft, pgraft3, pgraft6, ddpo)."""
    out = []
    for m in cfg.methods:
        out += [f"pgraft{n}" for n in cfg.pgraft.intermediate_steps] if m == "pgraft" else [m]
    return out


def build_method(cfg, task: str, run: str, model, seed: int, dedup_key=None):
    """The fine-tuning method of a run name (graft, ddpo, pgraft{N_I}, and graft_<variant>
    for a task config with such a section, e.g. graft_threshold) on `model`, its loop
    seeded with the run's seed. dedup_key: identity of a decoded sample for GRAFT's
    de-duplication (default: `graft.sample_key`, exact copies)."""
    from graftbench.methods.ddpo import DDPO
    from graftbench.methods.graft import Graft
    from graftbench.methods.pgraft import PGraft

    variants = [f.name for f in dataclasses.fields(cfg) if f.name.startswith("graft_")]
    key = {} if dedup_key is None else {"dedup_key": dedup_key}
    if run == "graft" or run in variants:
        cls, mcfg = Graft, getattr(cfg, run)
    elif run == "ddpo":
        cls, mcfg, key = DDPO, cfg.ddpo, {}
    elif run.startswith("pgraft") and run[6:].isdigit():
        if int(run[6:]) not in cfg.pgraft.intermediate_steps:
            raise ConfigError(
                f"{run}: N_I {run[6:]} is not in {task}.pgraft.intermediate_steps "
                f"{cfg.pgraft.intermediate_steps}"
            )
        cls, mcfg = PGraft, cfg.pgraft.at(int(run[6:]))
    else:
        raise ConfigError(
            f"--run: {run!r}; choose {', '.join(['graft', *variants, 'ddpo'])} or pgraft<N_I>"
        )
    mcfg = dataclasses.replace(mcfg, loop=dataclasses.replace(mcfg.loop, seed=seed))
    torch.manual_seed(seed)  # LoRA's initial A matrices
    return cls(model, mcfg, **key)


def plain_factory(model, scale: float | None = None):
    """inputs -> the sampler callable of `model` (guided where the adapter has `guided`)."""
    from graftbench.methods.loop import denoiser

    return lambda inputs: denoiser(model, inputs, scale)


def eval_segments(method, model) -> tuple[list, int | None]:
    """The evaluation sampler's segments for a fine-tuned model and P-GRAFT's N_I (None for
    other methods): P-GRAFT samples with the fine-tuned model down to N_I, the base after."""
    from graftbench.methods.pgraft import PGraft

    if isinstance(method, PGraft):
        n_i = method.cfg.intermediate_step
        return [(plain_factory(model), n_i), (method.base_factory(), None)], n_i
    return [(plain_factory(model), None)], None


def run_with_curve(
    method,
    conditions: Sequence,
    reward,
    curve: Callable[[], float],
    every: int,
    out: Path,
    model_input=None,
) -> list[dict]:
    """`loop.run` until the budget is spent, logging rounds to out/rounds.jsonl with a
    held-out `curve()` point every `every` rounds and after the last. The loop's state is
    checkpointed to out/`LOOP_CHECKPOINT`, so a killed run continues from its last saved
    round; the caller removes it (`finish`) once the run's results are written. On several
    ranks call it on all of them: rank 0 alone logs and evaluates the curve (`curve` must not
    call collectives), the others get rows without curve_reward."""
    from graftbench.methods.loop import run

    budget = method.cfg.loop.reward_budget

    def on_round(row: dict) -> dict:
        if row["reward_queries"] == budget or (row["round"] + 1) % every == 0:
            return {"curve_reward": curve()}
        return {}

    log = out / "rounds.jsonl"
    if is_writer():
        log.unlink(missing_ok=True)
    return run(
        method,
        conditions,
        reward,
        method.cfg.loop,
        model_input=model_input,
        log=log,
        on_round=on_round,
        checkpoint=out / LOOP_CHECKPOINT,
    )


LOOP_CHECKPOINT = "loop.partial"  # the fine-tuning loop's resumable state, in the run folder


def finish(out: Path) -> None:
    """Drop the loop checkpoint of a run whose results are all written (rank 0 alone gets
    here: the verbs return on the other ranks once the loop is done)."""
    (out / LOOP_CHECKPOINT).unlink(missing_ok=True)


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


def base_record(seed: int, f_call: int, t0: float, device: str) -> dict:
    """metrics.json of the base run: no fine-tuning compute."""
    return {
        "run": "base",
        "method": "base",
        "seed": seed,
        "reward_queries": 0,
        "sampler_nfe": 0,
        "sampler_flops": 0,
        "train_flops": 0,
        "flops_per_call": f_call,
        "wall_s": time.perf_counter() - t0,
        "device": device,
        "versions": records.versions(),
    }
