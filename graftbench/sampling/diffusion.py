"""Sampling loops over diffusers schedulers that return whole trajectories.

`sample_diffusion` drives a DDPMScheduler, DDIMScheduler (any eta) or
FlowMatchEulerDiscreteScheduler with any denoiser callable `(x, t) -> Tensor` and an explicit
`torch.Generator`. It keeps the states at requested step indices and, for stochastic steps,
the Gaussian log-density of each transition, which DDPO needs for its likelihood ratio and
P-GRAFT needs for nothing but the intermediate state.

Step indexing: state i is the input of step i, so state 0 is x_T (pure noise) and state
`num_steps` is the final sample x_0.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:  # imported where used: diffusers takes ~2 s to import, and the masked
    # (molecule) jobs import this module for `Trajectory` alone
    from diffusers import DDIMScheduler, DDPMScheduler, FlowMatchEulerDiscreteScheduler

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class Trajectory:
    """What one sampling run produced.

    sample:    (batch, ...) the final state x_0.
    timesteps: (num_steps,) scheduler timesteps, in the order they were visited.
    states:    step index -> (batch, ...) state entering that step (0 = x_T, num_steps = x_0).
    log_probs: (batch, len(stochastic_steps)) log p(x_{i+1} | x_i) of each stochastic
               transition (summed over every dimension), or None when no step added noise.
    stochastic_steps: step index i of each log_probs column (a step that adds no noise,
               such as DDPM's last, has no density and no column).
    nfe:       network evaluations spent.
    """

    sample: torch.Tensor
    timesteps: torch.Tensor
    states: dict[int, torch.Tensor]
    log_probs: torch.Tensor | None
    stochastic_steps: list[int]
    nfe: int


def posterior_std(scheduler: DDIMScheduler | DDPMScheduler, t: int, eta: float) -> float:
    """Standard deviation of the step from timestep t (Song et al. 2021, eq. 16).

    sigma_t(eta) = eta * sqrt((1 - abar_prev) / (1 - abar_t)) * sqrt(1 - abar_t / abar_prev).
    With eta = 1 this is the DDPM posterior ("fixed_small") standard deviation sqrt(beta_tilde),
    which is why one function serves both schedulers. The previous timestep is each
    scheduler's own: DDIM always steps to t - T // N (ending on `final_alpha_cumprod`), DDPM to
    the next entry of its timestep list (its last step adds no noise). Returns 0.0 for a step
    that adds no noise.
    """
    from diffusers import DDIMScheduler

    if isinstance(scheduler, DDIMScheduler):
        prev_t = t - scheduler.config.num_train_timesteps // scheduler.num_inference_steps
        final = scheduler.final_alpha_cumprod.item()
    else:
        prev_t = int(scheduler.previous_timestep(t))
        final = None
    abar_t = scheduler.alphas_cumprod[t].item()
    abar_prev = scheduler.alphas_cumprod[prev_t].item() if prev_t >= 0 else final
    if abar_prev is None:
        return 0.0
    var = (1 - abar_prev) / (1 - abar_t) * (1 - abar_t / abar_prev)
    return eta * math.sqrt(var) if var > 0 else 0.0


def gaussian_log_prob(x: torch.Tensor, mean: torch.Tensor, std: float) -> torch.Tensor:
    """log N(x; mean, std^2 I), summed over all but the batch dimension -> (batch,), float64.

    In float64 because the sum is large: over a 3x32x32 image the -d log(std) term alone is
    ~1e4, where float32 resolves only 2^-10, and DDPO's PPO ratio exp(new - old) would carry
    that rounding (ratios off 1 by 0.001 before any update, beyond a 1e-4 clip range)."""
    d = x[0].numel()
    sq = ((x.double() - mean.double()) ** 2).flatten(1).sum(1)
    return -0.5 * sq / std**2 - d * math.log(std) - 0.5 * d * math.log(2 * math.pi)


def sample_diffusion(
    denoise: Denoiser,
    scheduler: DDIMScheduler | DDPMScheduler | FlowMatchEulerDiscreteScheduler,
    x: torch.Tensor,
    *,
    num_steps: int,
    generator: torch.Generator,
    eta: float = 0.0,
    keep: Iterable[int] | None = None,
    start_step: int = 0,
    stop_step: int | None = None,
) -> Trajectory:
    """Run the reverse process from `x` (the state entering step `start_step`).

    denoise:    callable (x (batch, ...), t (batch,)) -> network output in the scheduler's
                parameterisation (epsilon, v or flow velocity).
    eta:        DDIM stochasticity (ignored by DDPM, which is always stochastic, and by the
                deterministic flow scheduler).
    keep:       step indices whose states are kept; None keeps every state.
    start_step, stop_step: run only steps [start_step, stop_step); P-GRAFT's stitched
                sampler calls this twice with two denoisers and the same scheduler.
    """
    from diffusers import FlowMatchEulerDiscreteScheduler

    scheduler.set_timesteps(num_steps, device=x.device)
    timesteps = scheduler.timesteps
    stop_step = num_steps if stop_step is None else stop_step
    keep = set(range(num_steps + 1)) if keep is None else set(keep)
    states = {start_step: x} if start_step in keep else {}
    log_probs, stochastic = [], []
    if isinstance(scheduler, FlowMatchEulerDiscreteScheduler):
        scheduler.set_begin_index(start_step)  # its step() counts sigmas from here
    for i in range(start_step, stop_step):
        t = timesteps[i]
        out = denoise(x, t.expand(x.shape[0]))
        x, lp = _step(scheduler, out, t, x, eta, generator)
        if lp is not None:
            log_probs.append(lp)
            stochastic.append(i)
        if i + 1 in keep:
            states[i + 1] = x
    return Trajectory(
        sample=x,
        timesteps=timesteps[start_step:stop_step],
        states=states,
        log_probs=torch.stack(log_probs, 1) if log_probs else None,
        stochastic_steps=stochastic,
        nfe=stop_step - start_step,
    )


def _step(scheduler, out, t, x, eta, generator):
    """One scheduler step; returns (next state, log-prob of the transition or None)."""
    from diffusers import DDIMScheduler, DDPMScheduler, FlowMatchEulerDiscreteScheduler

    if isinstance(scheduler, FlowMatchEulerDiscreteScheduler):
        return scheduler.step(out, t, x).prev_sample, None
    t_int = int(t)
    if isinstance(scheduler, DDIMScheduler):
        if eta == 0.0:
            return scheduler.step(out, t, x, eta=0.0).prev_sample, None
        std = posterior_std(scheduler, t_int, eta)
        noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        if std == 0.0:  # e.g. the last step onto final_alpha_cumprod = 1
            return scheduler.step(out, t, x, eta=eta, variance_noise=noise).prev_sample, None
        # the step's mean exactly as DDPO's update recomputes it (`transition_log_prob`), so
        # the PPO ratio starts at 1 up to float64 rounding; plus sigma * noise, as in the
        # scheduler (its std_dev_t is `posterior_std`)
        mean = scheduler.step(out, t, x, eta=eta, variance_noise=torch.zeros_like(x)).prev_sample
        nxt = mean + std * noise
        return nxt, gaussian_log_prob(nxt, mean, std)
    if isinstance(scheduler, DDPMScheduler):
        # DDPMScheduler draws its own noise from `generator`; replaying the generator's state
        # recovers that noise, hence the step's mean, without re-implementing the step.
        state = generator.get_state()
        nxt = scheduler.step(out, t, x, generator=generator).prev_sample
        std = posterior_std(scheduler, t_int, 1.0)
        if std == 0.0:
            return nxt, None
        generator.set_state(state)
        noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return nxt, gaussian_log_prob(nxt, nxt - std * noise, std)
    raise TypeError(f"unsupported scheduler {type(scheduler).__name__}")


def transition_log_prob(
    scheduler, out: torch.Tensor, t: torch.Tensor, x: torch.Tensor, nxt: torch.Tensor, eta: float
) -> torch.Tensor:
    """log pi(nxt | x) of one DDIM step from timestep t, (batch,), differentiable in `out`.

    The step is Gaussian (Song et al. 2021, eq. 12): mean sqrt(abar_prev) x0_hat +
    sqrt(1 - abar_prev - sigma^2) eps_hat, std sigma of eq. 16 (`posterior_std`). The mean is
    the scheduler's own step with zero noise, the same arithmetic the sampler ran.
    out: network output (batch, ...) at (x, t); x, nxt: (batch, ...) consecutive states.
    A model whose steps are not Gaussian (the masked diffusion's unmask tokens) gives its own
    density through `FinetuneModel.transition_log_prob`."""
    std = posterior_std(scheduler, int(t), eta)
    mean = scheduler.step(out, t, x, eta=eta, variance_noise=torch.zeros_like(x)).prev_sample
    return gaussian_log_prob(nxt, mean, std)
