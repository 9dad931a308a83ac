"""The one fine-tuning runner of every reward fine-tuning task (t2i, layout, molecule, and any
task that implements `finetuning.task.FinetuneTask`): evaluate the pre-trained model as the
base run, or build a run's method, run the loop with its held-out curve, evaluate, compare
with the base and write the run's records.

A run folder gets, in this order: the task's samples (`Session.write`), model.pt (fine-tuned
runs), config.json, eval.json and metrics.json, the last marking a finished run; rounds.jsonl
is written as the loop goes and its resumable state (`LOOP_CHECKPOINT`) is removed at the end.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from graftbench import records
from graftbench.config import ConfigError, to_dict
from graftbench.distributed import is_writer
from graftbench.finetuning.build import build_method, eval_segments, plain_factory
from graftbench.finetuning.run_records import base_record, flops_per_call, run_record
from graftbench.finetuning.task import BEST_OF_M, Evaluation, FinetuneTask, RunInputs, Session
from graftbench.models.base import FinetuneModel

LOOP_CHECKPOINT = "loop.partial"  # the fine-tuning loop's resumable state, in the run folder


def check_inputs(task: FinetuneTask, inputs: RunInputs, verb: str) -> None:
    """A ConfigError naming the command-line input a task's runs need but were not given."""
    what = {"data": "prepare-data's folder", "features": "train-features' network"}
    for name in task.inputs:
        if vars(inputs)[name] is None:
            raise ConfigError(f"--{name}: the {task.name} task's {verb} reads {what[name]}")


def evaluate_base(
    task: FinetuneTask,
    cfg: Any,
    model_path: Path,
    seed: int,
    out: Path,
    device: str = "cpu",
    inputs: RunInputs | None = None,
) -> dict:
    """The pre-trained model, evaluated as every fine-tuned one is: the base run, the
    reference the fine-tuned runs' drift and paired changes are measured from."""
    return evaluate_pretrained(task, cfg, model_path, seed, out, device, inputs)


def best_of_m(
    task: FinetuneTask,
    cfg: Any,
    model_path: Path,
    seed: int,
    base: Path,
    out: Path,
    device: str = "cpu",
    inputs: RunInputs | None = None,
) -> dict:
    """The `best_of_m` reference run: no fine-tuning; every evaluation sample (and curve
    point) is the best of m = `best_of_m.m` draws of the pre-trained model by the task's
    reward (with GRAFT's M, what its top-1 law aims to distil into the model), paid for at
    inference time: m times the sampling and m reward queries per sample. Compared with
    the base run in folder `base` like a fine-tuned run."""
    m = cfg.best_of_m.m
    return evaluate_pretrained(task, cfg, model_path, seed, out, device, inputs, base, m)


def evaluate_pretrained(
    task: FinetuneTask,
    cfg: Any,
    model_path: Path,
    seed: int,
    out: Path,
    device: str,
    inputs: RunInputs | None,
    base: Path | None = None,
    best_of: int = 1,
) -> dict:
    """Evaluate the pre-trained model without fine-tuning: the base run (best_of 1, no
    base), or best_of_m (each sample the best of `best_of` draws, compared with `base`)."""
    inputs = inputs or RunInputs()
    check_inputs(task, inputs, "evaluate-model" if base is None else "finetune")
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    session = task.open(cfg, inputs, out, device, base)
    try:
        model = task.load_model(model_path, device)
        segments = [(plain_factory(model), None)]
        ev = session.evaluate(segments, model, seed, best_of=best_of)
        ev.metrics["curve_reward"] = session.curve(segments, model, seed, best_of=best_of)
    finally:
        session.close()
    ev.metrics.update(session.compare(ev))
    f_call = flops_per_call(model, task.probe_condition)
    run = "base" if base is None else BEST_OF_M
    nfe = best_of * inference_nfe(cfg, model)
    metrics = with_evaluator(base_record(run, seed, f_call, nfe, t0, device), session)
    if base is not None:
        metrics.update(best_of=best_of, inference_reward_queries=best_of)
    write_run(out, cfg, session, ev, metrics)
    return {**metrics, **ev.metrics}


def inference_nfe(cfg: Any, model: FinetuneModel) -> int:
    """Network calls per sample of the evaluation sampler (a guided pair counts twice)."""
    return cfg.evaluate.num_steps * model.calls_per_step()


def finetune(
    task: FinetuneTask,
    cfg: Any,
    model_path: Path,
    run: str,
    seed: int,
    base: Path,
    out: Path,
    device: str = "cpu",
    inputs: RunInputs | None = None,
) -> dict:
    """Fine-tune the pre-trained model with one method on the task's training conditions
    until the reward budget is spent, recording a held-out curve point every
    `evaluate.curve_every` rounds; then evaluate it and compare it with the base run in
    folder `base` (same evaluation noise). Under torchrun every rank calls this; rank 0
    alone evaluates and writes, the others return {}. Run `best_of_m` is the reference
    without fine-tuning (`best_of_m`; one process)."""
    if run == BEST_OF_M:
        return best_of_m(task, cfg, model_path, seed, base, out, device, inputs)
    inputs = inputs or RunInputs()
    check_inputs(task, inputs, "finetune")
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    session = task.open(cfg, inputs, out, device, base)  # checks the base before any compute
    try:
        model = task.load_model(model_path, device)
        method = build_method(cfg, task.name, run, model, seed, session.dedup_key)
        segments, n_i = eval_segments(method, model)
        rows = run_with_curve(
            method,
            session.conditions,
            session.reward(),
            lambda: session.curve(segments, model, seed),
            cfg.evaluate.curve_every,
            out,
            model_input=session.model_input,
        )
        if not is_writer():  # the other ranks' models equal rank 0's: it evaluates, writes
            return {}
        train_s = time.perf_counter() - t0
        ev = session.evaluate(segments, model, seed)
    finally:
        session.close()
    ev.metrics.update(session.compare(ev))
    ev.metrics["curve_reward"] = rows[-1]["curve_reward"]
    f_call = flops_per_call(model, task.probe_condition)
    metrics = run_record(rows, run, seed, n_i, f_call, model.calls_per_step(), t0, train_s, device)
    metrics["inference_flops"] = inference_nfe(cfg, model) * f_call
    metrics = with_evaluator(metrics, session)
    model.save(out / "model.pt", to_dict(cfg))
    write_run(out, cfg, session, ev, metrics)
    (out / LOOP_CHECKPOINT).unlink(missing_ok=True)  # the run's results are all written
    return {**metrics, **ev.metrics}


def with_evaluator(metrics: dict, session: Session) -> dict:
    """metrics.json's record, naming the scorer where the session has one."""
    return metrics if session.evaluator is None else {**metrics, "evaluator": session.evaluator}


def write_run(out: Path, cfg: Any, session: Session, ev: Evaluation, metrics: dict) -> None:
    """The task's samples, then config.json, eval.json and metrics.json (last: its presence
    marks a finished run)."""
    session.write(out, ev)
    records.write_json(out / "config.json", to_dict(cfg))
    records.write_json(out / "eval.json", ev.metrics)
    records.write_json(out / "metrics.json", metrics)


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
    round. On several ranks call it on all of them: rank 0 alone logs and evaluates the
    curve (`curve` must not call collectives), the others get rows without curve_reward."""
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
