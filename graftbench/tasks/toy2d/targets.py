"""The exact law each toy2d run aims at, as samples: the base's own law under the evaluation
sampler, reweighted by the closed-form acceptance of the run's rule
(`methods.selection.target_weights`).

- graft, graft_<variant>, self_fit: one round of M base samples per group, accepted by the
  section's rule: p_acc(x) = p(x) w(r(x)) (self_fit: w = 1, the base itself).
- best_of_m: the best of m base draws, w = m F^(m-1).
- pgraft{N_I}: the state x_{t_I} of the accepted trajectories, continued by the base to x_0
  with fresh step noise: the law P-GRAFT reaches with a perfect fit of the intermediate law.
  With a stochastic sampler (eta > 0) acceptance given x_{t_I} is noisy, so this law is GRAFT's
  smoothed; the smoothing is the variance side of the paper's argument.
- ddpo has none (it maximises the reward with no target law).
The base's draws come from a pool of `evaluate.target_pool` trajectories; each target is 2 x
`evaluate.samples` points drawn from it by the weights (with replacement).
"""

from __future__ import annotations

import copy

import torch

from graftbench.finetuning.build import plain_factory
from graftbench.methods.loop import LoopConfig
from graftbench.methods.rollout import sample_segments
from graftbench.methods.selection import SelectionConfig, target_weights
from graftbench.tasks.toy2d.config import Toy2dConfig
from graftbench.tasks.toy2d.data import bump

RESAMPLE_STRIDE = 7919  # target j's resampling seed = seed + j * this


def on_cpu(model):
    """The model, or a copy of it on the CPU. The exact targets and the two analyses (Var[r |
    x_t], INC) draw from CPU generators whatever the run's --device, so they are the same
    numbers on every machine; a 2-D MLP costs nothing there. (On CUDA they failed: a CPU
    generator drawing on the device.)"""
    if next(model.network.parameters()).device.type == "cpu":
        return model
    cpu = copy.deepcopy(model)
    cpu.network.to("cpu")
    return cpu


@torch.no_grad()
def base_pool(model, cfg: Toy2dConfig, seed: int, keep: set[int], size: int):
    """A `Rollout` of `size` base trajectories (the evaluation sampler), keeping the states at
    step indices `keep` and the final points."""
    ev = cfg.evaluate
    loop = LoopConfig(num_steps=ev.num_steps, eta=ev.eta, sample_batch=size)
    g = torch.Generator().manual_seed(seed)
    segments = [(plain_factory(model), None)]
    inputs = ["ring"] * size
    sched = model.scheduler("ddim")
    return sample_segments(model, segments, sched, inputs, loop, g, keep | {ev.num_steps})


def rule_of(cfg: Toy2dConfig, run: str) -> tuple[SelectionConfig, int] | None:
    """(selection rule, group size M) whose accepted law is run's target; None for ddpo."""
    if run == "base":
        return SelectionConfig(rule="all"), 1
    if run == "best_of_m":
        return SelectionConfig(rule="best_of_n"), cfg.best_of_m.m
    if run == "ddpo":
        return None
    section = cfg.pgraft if run.startswith("pgraft") else getattr(cfg, run)
    return section.selection, section.loop.samples_per_prompt


@torch.no_grad()
def target_samples(model, cfg: Toy2dConfig, seed: int) -> dict[str, torch.Tensor]:
    """Run name -> (2 x evaluate.samples, 2) draws of its exact target law (module doc)."""
    model = on_cpu(model)
    runs = [r for r in cfg.runs() if rule_of(cfg, r) is not None]
    n_i = {r: int(r[6:]) for r in runs if r.startswith("pgraft")}
    pool = base_pool(model, cfg, seed, set(n_i.values()), cfg.evaluate.target_pool)
    rewards = bump(cfg.data, cfg.reward)(pool.final)
    n, ev = 2 * cfg.evaluate.samples, cfg.evaluate
    out = {}
    for j, run in enumerate(runs):
        rule, m = rule_of(cfg, run)
        g = torch.Generator().manual_seed(seed + (j + 1) * RESAMPLE_STRIDE)
        idx = torch.multinomial(target_weights(rewards, rule, m), n, replacement=True, generator=g)
        if run not in n_i:
            out[run] = pool.final[idx]
            continue
        # the accepted trajectories' x_{t_I}, continued by the base with fresh noise
        x = pool.trajectory.states[n_i[run]][idx]
        out[run] = model.sample_trajectory(
            plain_factory(model)(["ring"] * n),
            model.scheduler("ddim"),
            x,
            num_steps=ev.num_steps,
            generator=g,
            eta=ev.eta,
            keep={ev.num_steps},
            start_step=n_i[run],
        ).sample
    return out
