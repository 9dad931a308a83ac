"""The toy2d task's typed config (import-light: no diffusers)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from graftbench.config import ConfigError, Count, Count2, Counts, NonNegative, Positive, Seeds
from graftbench.finetuning.task import BestOfMConfig, check_methods, run_names
from graftbench.methods.ddpo import DDPOConfig
from graftbench.methods.graft import GraftConfig
from graftbench.methods.inc import InversionConfig
from graftbench.methods.loop import LoopConfig
from graftbench.methods.pgraft import PGraftSweep
from graftbench.methods.selection import SelectionConfig
from graftbench.train import TrainConfig


def one_round() -> LoopConfig:
    """A loop drawing its whole budget in one round from the base (64 groups of M = 64)."""
    return LoopConfig(reward_budget=4096, prompts_per_round=64, samples_per_prompt=64)


Method = Literal["base", "graft", "graft_threshold", "self_fit", "pgraft", "ddpo", "best_of_m"]


@dataclass
class RingConfig:
    modes: Count = 8  # Gaussian modes, evenly spaced on a circle (mode 0 at angle 0)
    radius: Positive = 2.0  # the circle's radius
    std: Positive = 0.15  # each mode's standard deviation (isotropic)
    n_train: Count = 4096  # training points, drawn once with `seed`: pre-training's data and
    # the points INC inverts
    seed: int = 0  # seed of the training points


@dataclass
class BumpReward:
    angle: float = 0.0  # direction (degrees) of the rewarded point c on the circle
    width: Positive = 1.5  # the bump's scale: r(x) = exp(-|x - c|^2 / (2 width^2)), in (0, 1]


@dataclass
class MLPConfig:
    width: Count = 64  # hidden units per layer
    depth: Count = 3  # hidden layers
    time_dim: Count = 32  # sinusoidal timestep features (diffusers' get_timestep_embedding)


@dataclass
class Toy2dEvaluate:
    num_steps: Count = 20  # DDIM steps of the evaluation sampler (and every method's loop)
    eta: NonNegative = (
        1.0  # its stochasticity, as the loops' (1: DDPM-like; x_0 given x_t is random)
    )
    samples: Count2 = 2000  # points per evaluation, and per target or data sample compared
    curve_samples: Count2 = 500  # points scored after each fine-tuning round
    curve_every: Count = 1  # rounds between curve points (the last round always gets one)
    target_pool: Count = 100_000  # base trajectories the exact target laws reweight (base run)
    seed_offset: int = 1000  # evaluation noise seed = run seed + this

    def __post_init__(self):
        if self.target_pool < 2 * self.samples:
            raise ConfigError(
                f"toy2d.evaluate.target_pool: {self.target_pool} must be at least twice "
                f"evaluate.samples ({self.samples}): each target is compared as two samples"
            )


@dataclass
class VarianceConfig:
    states: Count2 = 256  # base states x_t drawn at every sampler step
    rollouts: Count2 = 32  # base continuations to x_0 from each state (fresh step noise)


@dataclass
class CorrectorTraining:
    max_steps: Count = 60000  # optimiser steps at most
    batch_size: Count = 256  # inverted noises per step
    lr: Positive = 2e-3  # Adam learning rate
    eval_every: Count = 1000  # steps between held-out losses
    patience: Count = 5  # stop after this many held-out losses without a new best (the best
    # weights are kept): trained until the held-out loss stops falling
    held_draws: Count = 16  # fixed (sigma, noise) draws per held-out point in that loss: the
    # flow-matching loss is mostly irreducible noise, so one draw hides a slow fall


@dataclass
class Toy2dIncConfig:
    base_steps: Counts = field(default_factory=lambda: [2, 4, 8, 16, 32])  # base sampler
    # step counts on the frontier (deterministic DDIM = Euler in flow coordinates)
    corrected_steps: Counts = field(default_factory=lambda: [4, 8])  # base step counts
    # that get an inversion and a corrector (each must be in base_steps)
    corrector_steps: Counts = field(default_factory=lambda: [4, 16])  # corrector Euler
    # steps swept
    invert: InversionConfig = field(
        default_factory=lambda: InversionConfig(n_images=0, perturb=1e-3, tol=1e-6)
    )  # inverting the training points (n_images 0: all; the paper's 1e-3 perturbation)
    model: MLPConfig = field(default_factory=lambda: MLPConfig(width=32, depth=2))  # the
    # corrector flow (smaller than the base)
    train: CorrectorTraining = field(default_factory=CorrectorTraining)  # its training

    def __post_init__(self):
        missing = [s for s in self.corrected_steps if s not in self.base_steps]
        if missing:
            raise ConfigError(
                f"toy2d.inc.corrected_steps: {missing[0]} is not in toy2d.inc.base_steps "
                f"{self.base_steps}; INC is compared with the base at the same step count"
            )


@dataclass
class Toy2dConfig:
    methods: list[Method] = field(  # the table's runs (base: the pre-trained model)
        default_factory=lambda: ["base", "graft", "graft_threshold", "pgraft", "ddpo"]
    )
    seeds: Seeds = field(default_factory=lambda: [0, 1, 2])  # fine-tuning + evaluation seeds
    data: RingConfig = field(default_factory=RingConfig)  # the data law (closed form)
    reward: BumpReward = field(default_factory=BumpReward)  # the smooth reward
    model: MLPConfig = field(default_factory=MLPConfig)  # the base's denoiser
    pretrain: TrainConfig = field(default_factory=TrainConfig)  # its pre-training
    graft: GraftConfig = field(  # top-K GRAFT; loop.seed: the run's
        default_factory=lambda: GraftConfig(loop=one_round(), selection=SelectionConfig(k=8))
    )
    graft_threshold: GraftConfig = field(
        default_factory=lambda: GraftConfig(
            loop=one_round(), selection=SelectionConfig(rule="threshold", tau=0.8)
        )
    )  # GRAFT with the threshold rule
    pgraft: PGraftSweep = field(  # P-GRAFT, one run per N_I
        default_factory=lambda: PGraftSweep(loop=one_round(), selection=SelectionConfig(k=8))
    )
    ddpo: DDPOConfig = field(default_factory=DDPOConfig)  # the policy-gradient baseline
    self_fit: GraftConfig = field(
        default_factory=lambda: GraftConfig(loop=one_round(), selection=SelectionConfig(rule="all"))
    )  # reference run: GRAFT's update on all M samples (selection.rule must be all)
    best_of_m: BestOfMConfig = field(default_factory=BestOfMConfig)  # reference run: the
    # base's best of m samples by the reward, no fine-tuning
    evaluate: Toy2dEvaluate = field(default_factory=Toy2dEvaluate)  # scoring and targets
    variance: VarianceConfig = field(default_factory=VarianceConfig)  # Var[r(x_0) | x_t]
    inc: Toy2dIncConfig = field(default_factory=Toy2dIncConfig)  # INC on the same base

    def __post_init__(self):
        check_methods(self, "toy2d")
        tuned = [m for m in self.runs() if m not in ("base", "best_of_m")]
        for run in tuned:
            loop = (self.pgraft if run.startswith("pgraft") else getattr(self, run)).loop
            if loop.eta != self.evaluate.eta or loop.num_steps != self.evaluate.num_steps:
                raise ConfigError(
                    f"toy2d.{run.rstrip('0123456789')}.loop: eta {loop.eta:g}, "
                    f"{loop.num_steps} steps; must equal toy2d.evaluate's (eta "
                    f"{self.evaluate.eta:g}, {self.evaluate.num_steps} steps): the exact "
                    "targets reweight the base's law under the evaluation sampler"
                )
            if (
                run != "ddpo"
                and loop.reward_budget != loop.prompts_per_round * loop.samples_per_prompt
            ):
                raise ConfigError(
                    f"toy2d.{run.rstrip('0123456789')}.loop.reward_budget: {loop.reward_budget} "
                    f"must equal prompts_per_round x samples_per_prompt "
                    f"({loop.prompts_per_round} x {loop.samples_per_prompt}): one round drawn "
                    "from the base, whose accepted law is the exact target"
                )

    def runs(self) -> list[str]:
        """Run names, in table order: base, graft, graft_threshold, pgraft{N_I}..., ddpo."""
        return run_names(self)
