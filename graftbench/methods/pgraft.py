"""P-GRAFT: GRAFT at an intermediate noise level (DESIGN.md, "P-GRAFT"; the paper's sec. 4).

Sample whole trajectories x_T -> ... -> x_{t_I} -> ... -> x_0, accept by the final reward
r(x_0) exactly as GRAFT does, but keep each accepted trajectory's state x_{t_I} (state index
N_I of the sampler, `intermediate_step`) and fit the model only on times t in (t_I, T], with
x_{t_I} as the data: the DDPM kernel from t_I gives
    x_t = sqrt(abar_t / abar_I) x_I + sqrt(1 - abar_t / abar_I) eps',
    eps_target = sqrt(1 - abar_t) / sqrt(1 - abar_t / abar_I) eps'    (`paths.ddpm_from_intermediate`,
converted to v where the model predicts v; `losses.intermediate_loss`). The accepted x_{t_I} follow the shaped law
p_theta(x_I | c) E[acceptance | x_I], which the fine-tuned model learns at high noise, where
the score is near-Gaussian and easy (less bias), at the cost of accepting on a reward that is
a noisy function of x_I (more variance); N_I trades the two.

Sampling stitches two models: the fine-tuned one for steps [0, N_I) (timesteps above t_I),
the frozen base for [N_I, N) (t_I down to 0). The base is a frozen copy of the network for
full/UNet fine-tuning, or, for LoRA, the same network with its adapters switched off (no
second copy of the weights, which matters at SD scale).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

from graftbench.config import ConfigError, Count, Counts
from graftbench.methods.graft import Graft, GraftConfig, frozen_copy, sample_key
from graftbench.methods.rollout import Rollout, denoiser, sample_segments
from graftbench.models.base import FinetuneModel


@dataclass
class PGraftConfig(GraftConfig):
    intermediate_step: Count = 10  # N_I: sampler state whose x_{t_I} is kept (0 = x_T,
    # loop.num_steps = x_0); t_I is the timestep the sampler assigns to that state. Swept by
    # the workflow: small N_I shapes at high noise (more reward variance), large near the data

    def __post_init__(self):
        super().__post_init__()
        if self.t_min:
            raise ConfigError(f"t_min: {self.t_min}; it is GRAFT's (P-GRAFT trains t > t_I)")
        if self.anchor:
            raise ConfigError(f"anchor: {self.anchor}; it is GRAFT's (P-GRAFT's loss has none)")
        if not 1 <= self.intermediate_step < self.loop.num_steps:
            raise ConfigError(
                f"intermediate_step: {self.intermediate_step} must lie in "
                f"1..loop.num_steps - 1 = {self.loop.num_steps - 1}"
            )


@dataclass
class PGraftSweep(GraftConfig):
    """P-GRAFT's settings as a task config holds them: every run of the N_I sweep shares
    them; `at(n_i)` gives one run's config."""

    intermediate_steps: Counts = field(default_factory=lambda: [3, 5, 7])  # N_I values,
    # one run each: sampler state index of x_{t_I} (0 = pure noise, loop.num_steps = data)

    def __post_init__(self):
        super().__post_init__()
        if self.t_min:
            raise ConfigError(f"pgraft.t_min: {self.t_min}; it is GRAFT's (P-GRAFT trains t > t_I)")
        if self.anchor:
            raise ConfigError(
                f"pgraft.anchor: {self.anchor}; it is GRAFT's (P-GRAFT's loss has none)"
            )
        n = self.loop.num_steps
        for n_i in self.intermediate_steps:
            if not 1 <= n_i < n:
                raise ConfigError(
                    f"pgraft.intermediate_steps: {n_i} must lie in "
                    f"1..pgraft.loop.num_steps - 1 = {n - 1}"
                )

    def at(self, n_i: int) -> PGraftConfig:
        common = {k: v for k, v in vars(self).items() if k != "intermediate_steps"}
        return PGraftConfig(**common, intermediate_step=n_i)


@contextmanager
def adapters_disabled(network: torch.nn.Module):
    """Run `network` as its base: every peft adapter layer switched off, then back on.
    peft's switch also sets requires_grad, so the flags are restored as they were."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    layers = [m for m in network.modules() if isinstance(m, BaseTunerLayer)]
    flags = [p.requires_grad for p in network.parameters()]
    for m in layers:
        m.enable_adapters(False)
    try:
        yield
    finally:
        for m in layers:
            m.enable_adapters(True)
        for p, f in zip(network.parameters(), flags, strict=True):
            p.requires_grad_(f)


def _has_adapters(network: torch.nn.Module) -> bool:
    from peft.tuners.tuners_utils import BaseTunerLayer

    return any(isinstance(m, BaseTunerLayer) for m in network.modules())


class PGraft(Graft):
    """P-GRAFT on one model adapter: `model` is fine-tuned in place for t > t_I; `base` keeps
    the pre-trained model for t <= t_I (None under LoRA, where the base is `model` with its
    adapters off)."""

    def __init__(
        self,
        model: FinetuneModel,
        cfg: PGraftConfig,
        dedup_key: Callable[[Any], Hashable] = sample_key,
    ):
        # copy before Graft's Updater sets requires_grad (or adds LoRA) on the model
        self.base = None if cfg.optim.trainable == "lora" else frozen_copy(model)
        if self.base is None and _has_adapters(model.network):
            raise ValueError(
                "P-GRAFT with LoRA: the model already has adapters, so switching "
                "them off would not give the base model; merge them first"
            )
        super().__init__(model, cfg, dedup_key=dedup_key)

    def base_factory(self):
        if self.base is not None:
            return self._factory(self.base)
        model, scale = self.model, self.cfg.loop.guidance_scale

        def factory(inputs):
            with adapters_disabled(model.network):
                inner = denoiser(model, inputs, scale)

            def base(x, t):
                with adapters_disabled(model.network):
                    return inner(x, t)

            return base

        return factory

    def sample(self, inputs: list, generator: torch.Generator) -> Rollout:
        """Stitched sampling: fine-tuned model for steps [0, N_I), base for [N_I, N); keeps
        the states x_{t_I} (index N_I) and x_0 (index N), each (batch, *sample_shape)."""
        n_i, n = self.cfg.intermediate_step, self.cfg.loop.num_steps
        segments = [(self._factory(self.model), n_i), (self.base_factory(), None)]
        return sample_segments(
            self.model, segments, self.scheduler, inputs, self.cfg.loop, generator, keep={n_i, n}
        )

    def training_data(self, rollout: Rollout):
        """An accepted trajectory contributes x_{t_I} (batch, ...), fitted on t in (t_I, T]."""
        n_i = self.cfg.intermediate_step
        t_i = int(rollout.trajectory.timesteps[n_i])

        def loss(model, x, cond, generator):
            return model.intermediate_loss(x, cond, t_i, generator)

        return rollout.trajectory.states[n_i], loss, {"t_intermediate": t_i}
