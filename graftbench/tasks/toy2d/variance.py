"""Var[r(x_0) | x_t] of the toy2d base at every state of its evaluation sampler: the quantity
behind P-GRAFT's argument (the paper's sec. 4). Accepting at x_t on the final reward ranks
states by a noisy function of them; the noisier, the further P-GRAFT's shaped law lies from
GRAFT's. Measured by rollouts: `states` base states per step index, each continued
`rollouts` times to x_0 with fresh step noise (the evaluation sampler, eta > 0; with eta 0,
x_0 is a function of x_t and the variance is 0)."""

from __future__ import annotations

import torch

from graftbench.finetuning.build import plain_factory
from graftbench.tasks.toy2d.config import Toy2dConfig
from graftbench.tasks.toy2d.data import bump
from graftbench.tasks.toy2d.targets import base_pool, on_cpu


@torch.no_grad()
def reward_variance(model, cfg: Toy2dConfig, seed: int = 0) -> dict:
    """Per state index i (0 = x_T, N = x_0): E over states of the within-state variance of
    r(x_0) (unbiased, over its rollouts), its 95% CI over states, and that share of Var[r]."""
    model = on_cpu(model)  # CPU generators below (targets.on_cpu)
    ev, var = cfg.evaluate, cfg.variance
    n = ev.num_steps
    pool = base_pool(model, cfg, seed, set(range(n + 1)), var.states)
    r = bump(cfg.data, cfg.reward)
    total = r(pool.final).double().var().item()
    g = torch.Generator().manual_seed(seed + 1)
    denoise = plain_factory(model)(["ring"] * var.states * var.rollouts)
    rows = []
    for i in range(n + 1):
        x = pool.trajectory.states[i].repeat_interleave(var.rollouts, 0)
        if i < n:
            x = model.sample_trajectory(
                denoise,
                model.scheduler("ddim"),
                x,
                num_steps=n,
                generator=g,
                eta=ev.eta,
                keep={n},
                start_step=i,
            ).sample
        within = r(x).double().view(var.states, var.rollouts).var(1)
        mean, half = within.mean().item(), 1.96 * within.std().item() / var.states**0.5
        rows.append(
            {
                "state": i,
                "conditional_variance": mean,
                "ci95": half,
                "share_of_variance": mean / total,
            }
        )
    return {"reward_variance": total, "states": var.states, "rollouts": var.rollouts, "rows": rows}
