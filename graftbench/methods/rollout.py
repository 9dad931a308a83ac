"""Sampling for the fine-tuning loop: the sampler callable of a model for some conditions,
and whole trajectories from one or more stitched callables (`sample_segments`), returned as
a `Rollout` that the methods' `update` consumes."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from graftbench.models.base import FinetuneModel
from graftbench.sampling.diffusion import Denoiser, Trajectory

if TYPE_CHECKING:  # loop imports this module
    from graftbench.methods.loop import LoopConfig


@dataclass
class Rollout:
    """One round's samples. inputs: (batch,) model inputs, group-major; final: (batch, ...)
    x_0 in model space; trajectory: the kept states, log-probs of stochastic steps, merged over
    micro-batches and stitched segments; nfe: network evaluations per sample; decoded: what
    the reward scored (`model.decode(final)`), set by the loop before `update`."""

    inputs: list
    final: torch.Tensor
    trajectory: Trajectory
    nfe: int
    decoded: Any = None


def encode(model: FinetuneModel, inputs: list, grad: bool) -> Any:
    """model.encode_condition, building a graph only when the encoder is trained (a frozen
    encoder's graph would be freed by the first backward and cost memory for nothing)."""
    with torch.set_grad_enabled(grad and torch.is_grad_enabled()):
        return model.encode_condition(inputs)


def denoiser(
    model: FinetuneModel, inputs: list, scale: float | None = None, grad: bool = False
) -> Denoiser:
    """The sampler callable (x (batch, ...), t (batch,)) -> output for conditions `inputs`
    (`model.denoiser`: classifier-free guided with weight `scale` where the model has it)."""
    return model.denoiser(encode(model, inputs, grad), scale)


Segment = tuple[Callable[[list], Denoiser], int | None]  # (inputs -> callable, stop step)


@torch.no_grad()
def sample_segments(
    model: FinetuneModel,
    segments: Sequence[Segment],
    scheduler,
    inputs: list,
    cfg: LoopConfig,
    generator: torch.Generator,
    keep: Iterable[int] | None,
) -> Rollout:
    """Sample len(inputs) trajectories from `model.initial_state` with `model.sample_trajectory`,
    each segment running its own callable over steps [previous stop, stop) (P-GRAFT's
    stitching: fine-tuned to N_I, base after; one segment with stop None is ordinary
    sampling), cfg.sample_batch at a time with cfg.num_steps steps and DDIM's cfg.eta.
    keep: step indices whose states are kept (None: all). Initial and step noise come from
    `generator`, on the model's device."""
    device = next(model.network.parameters()).device
    keep = None if keep is None else set(keep)
    parts = []
    for s in range(0, len(inputs), cfg.sample_batch):
        chunk = inputs[s : s + cfg.sample_batch]
        x = model.initial_state(len(chunk), generator, device)
        start, pieces = 0, []
        for factory, stop in segments:
            pieces.append(
                model.sample_trajectory(
                    factory(chunk),
                    scheduler,
                    x,
                    num_steps=cfg.num_steps,
                    generator=generator,
                    eta=cfg.eta,
                    keep=keep,
                    start_step=start,
                    stop_step=stop,
                )
            )
            x, start = pieces[-1].sample, pieces[-1].timesteps.numel() + start
        parts.append(_join_segments(pieces))
    traj = _join_batches(parts)
    return Rollout(list(inputs), traj.sample, traj, traj.nfe)


def _join_segments(pieces: list[Trajectory]) -> Trajectory:
    lps = [p.log_probs for p in pieces if p.log_probs is not None]
    return Trajectory(
        sample=pieces[-1].sample,
        timesteps=torch.cat([p.timesteps for p in pieces]),
        states={i: x for p in pieces for i, x in p.states.items()},
        log_probs=torch.cat(lps, 1) if lps else None,
        stochastic_steps=[i for p in pieces for i in p.stochastic_steps],
        nfe=sum(p.nfe for p in pieces),
    )


def _join_batches(parts: list[Trajectory]) -> Trajectory:
    first = parts[0]
    return Trajectory(
        sample=torch.cat([p.sample for p in parts]),
        timesteps=first.timesteps,
        states={i: torch.cat([p.states[i] for p in parts]) for i in first.states},
        log_probs=None if first.log_probs is None else torch.cat([p.log_probs for p in parts]),
        stochastic_steps=first.stochastic_steps,
        nfe=first.nfe,
    )
