"""What a reward fine-tuning task supplies to the shared runner (`finetuning.runner`): its
config's shape, the model it loads and, per run, a `Session` that holds the task's side of
the run (conditions, reward, evaluator, how samples are compared and written).

t2i, layout and molecule implement these; the test `tests/test_new_task.py` implements them
for a 2-D toy in one module, which is what adding a task takes.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from graftbench.config import ConfigError, Count2, InputError
from graftbench.models.base import FinetuneModel


class FinetuneConfig(Protocol):
    """A fine-tuning task's typed config: these sections, plus any the task adds. A section
    `graft_<variant>` (a `GraftConfig`, e.g. graft_threshold) is one more GRAFT run; the
    reference runs `self_fit` (a `GraftConfig` with selection rule all) and `best_of_m` (a
    `BestOfMConfig`) are sections too."""

    methods: list[str]  # base, graft, graft_<variant>, self_fit, pgraft, ddpo, best_of_m
    seeds: list[int]  # fine-tuning and evaluation seeds
    graft: Any  # methods.graft.GraftConfig
    pgraft: Any  # methods.pgraft.PGraftSweep
    ddpo: Any  # methods.ddpo.DDPOConfig
    evaluate: Any  # with num_steps (the evaluation sampler's) and curve_every


@dataclass
class BestOfMConfig:
    """The `best_of_m` reference run: no fine-tuning; each evaluation sample is the best of
    m draws of the base by the task's reward (the evaluator used at inference time)."""

    m: Count2 = 8  # draws per evaluation sample (GRAFT's M where its
    # groups are per condition)


BEST_OF_M = "best_of_m"  # the reference run that keeps the base's best of m samples
REFERENCES = ("base", BEST_OF_M)  # runs without fine-tuning


def loop_sampler(loop: Any) -> tuple:
    """What a fine-tuning loop samples with: (scheduler, steps, eta, guidance)."""
    return (loop.scheduler, loop.num_steps, loop.eta, loop.guidance_scale)


@dataclass
class Evaluation:
    """What a session's evaluation gives the runner: `metrics` go to eval.json; a task's
    subclass adds what it compares with the base and writes (images, boxes, tokens...)."""

    metrics: dict = field(default_factory=dict)


@dataclass
class RunInputs:
    """Files a run reads besides the model, given on the command line: prepare-data's folder
    and the trained evaluation network; a task says which it needs (`FinetuneTask.inputs`)."""

    data: Path | None = None
    features: Path | None = None


@runtime_checkable
class Session(Protocol):
    """One run's task side, open from before fine-tuning until its records are written (it
    may hold data, an evaluation network or a scorer process, released by `close`)."""

    conditions: Sequence  # the training conditions the loop draws from
    evaluator: str | None  # the scorer's name, recorded in metrics.json (None: none to name)
    dedup_key: Callable[[Any], Hashable] | None  # identity of a decoded sample for GRAFT's
    # de-duplication (None: its exact bytes)

    def model_input(self, condition: Any) -> Any:
        """A training condition as `model.encode_condition` takes it (e.g. a prompt's text)."""

    def reward(self) -> Callable[[Any, Sequence], Any]:
        """The loop's reward: (model.decode's output, conditions) -> (batch,) scores."""

    def evaluate(
        self, segments: list, model: FinetuneModel, seed: int, best_of: int = 1
    ) -> Evaluation:
        """Sample with the evaluation sampler (segments as `methods.rollout.sample_segments`)
        and score; the same noise for every method at a seed. best_of M > 1: each sample is
        the best of M draws by the session's reward (`build.sample_final`), the first draw
        on the others' noise: the `best_of_m` reference run."""

    def curve(self, segments: list, model: FinetuneModel, seed: int, best_of: int = 1) -> float:
        """One point of the reward-against-queries curve: the mean reward on a fixed subset
        (best_of: as in `evaluate`)."""

    def compare(self, evaluation: Evaluation) -> dict:
        """Columns against the base run given to `FinetuneTask.open` (drift, paired changes);
        for the base run itself (none given), the same columns at their reference value."""

    def write(self, out: Path, evaluation: Evaluation) -> None:
        """The samples in open formats and the arrays `compare` reads back, into run folder
        `out` (the runner writes config, eval and metrics after them)."""

    def close(self) -> None: ...


@runtime_checkable
class FinetuneTask(Protocol):
    """A reward fine-tuning task as the runner sees it."""

    name: str
    inputs: tuple[str, ...]  # the `RunInputs` fields its runs need ("data", "features")
    probe_condition: Any  # one raw condition, for FLOPs per network call

    def load_model(self, path: Path, device: str) -> FinetuneModel:
        """The model a checkpoint holds (pretrain's, or a fine-tuned run's)."""

    def open(
        self, cfg: Any, inputs: RunInputs, out: Path, device: str, base: Path | None
    ) -> Session:
        """A session for one run into folder `out`; `base`: the base run's folder, whose
        saved samples `compare` measures against (checked here, before any compute)."""

    def describe(self, metrics: dict) -> str:
        """One line on a finished run (its metrics.json and eval.json merged), printed by
        the verbs."""


def base_samples(base: Path, file: str, key: str, like: np.ndarray) -> np.ndarray:
    """The array `key` of the base run's `file` (what `Session.write` saved there), checked to
    have the shape of this run's `like`: the two were drawn from the same noise."""
    path = base / file
    saved = np.load(path)[key]
    if saved.shape != like.shape:
        raise InputError(
            f"{path}: base {key} {saved.shape} do not match this run's {like.shape}; rerun the "
            "base evaluation"
        )
    return saved


def check_methods(cfg: FinetuneConfig, task: str) -> None:
    """The rules every fine-tuning task config obeys, naming the key: the base is among the
    methods (improvement and drift are measured against it), every method spends the same
    reward budget, and P-GRAFT's loop has the evaluation sampler's steps (its switch N_I is
    a state index of that grid)."""
    if "base" not in cfg.methods:
        raise ConfigError(
            f"{task}.methods: must include 'base' (improvement and drift are measured against it)"
        )
    tuned = [m for m in cfg.methods if m not in REFERENCES]
    budgets = {m: method_config(cfg, m).loop.reward_budget for m in tuned}
    if len(set(budgets.values())) > 1:
        (m0, b0), *rest = budgets.items()
        m1, b1 = next(kv for kv in rest if kv[1] != b0)
        raise ConfigError(
            f"{task}.{m1}.loop.reward_budget: {b1} differs from {task}.{m0}"
            f".loop.reward_budget ({b0}); methods are compared at equal reward queries"
        )
    check_loop_samplers(cfg, task, tuned)
    if "self_fit" in cfg.methods and cfg.self_fit.selection.rule != "all":
        raise ConfigError(
            f"{task}.self_fit.selection.rule: {cfg.self_fit.selection.rule!r} must be 'all' "
            "(self_fit is GRAFT's update on every sample, without selection)"
        )
    steps = cfg.evaluate.num_steps
    if "pgraft" in cfg.methods and cfg.pgraft.loop.num_steps != steps:
        raise ConfigError(
            f"{task}.pgraft.loop.num_steps: {cfg.pgraft.loop.num_steps} must equal "
            f"{task}.evaluate.num_steps ({steps}): P-GRAFT switches models at a state index "
            "of that grid"
        )


def check_loop_samplers(cfg: FinetuneConfig, task: str, methods: list[str]) -> None:
    """Every fine-tuning method samples its rounds with the same sampler (scheduler, steps,
    eta, guidance), so a table compares methods, not samplers; DDPO alone may differ in eta,
    which its policy gradient needs above 0 (a density for every step)."""
    ref = next((m for m in methods if m != "ddpo"), None)
    if ref is None:
        return
    want = loop_sampler(method_config(cfg, ref).loop)
    names = ("scheduler", "num_steps", "eta", "guidance_scale")
    for m in methods:
        got = loop_sampler(method_config(cfg, m).loop)
        for i, name in enumerate(names):
            if got[i] != want[i] and not (m == "ddpo" and name == "eta"):
                raise ConfigError(
                    f"{task}.{m}.loop.{name}: {got[i]} differs from {task}.{ref}.loop.{name} "
                    f"({want[i]}); every method samples its rounds with the same sampler "
                    "(DDPO alone may differ in eta, which it needs above 0)"
                )


def method_config(cfg: FinetuneConfig, method: str) -> Any:
    """The config section of a method name (graft, graft_<variant>, pgraft, ddpo)."""
    return vars(cfg)[method]


def run_names(cfg: FinetuneConfig) -> list[str]:
    """A task's run names in table order: its methods, P-GRAFT expanded to pgraft{N_I} for
    each N_I of the sweep (e.g. base, graft, pgraft3, pgraft6, ddpo)."""
    out = []
    for m in cfg.methods:
        out += [f"pgraft{n}" for n in cfg.pgraft.intermediate_steps] if m == "pgraft" else [m]
    return out
