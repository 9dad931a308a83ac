"""DDPO (Black et al. 2023, "Training diffusion models with reinforcement learning"), the
policy-gradient baseline.

Denoising is an MDP whose actions are the steps x_{i+1} ~ pi_theta(. | x_i, c) of stochastic
DDIM (eta = 1). With an advantage A per trajectory, normalised per prompt, DDPO maximises the
PPO-clipped surrogate (Black et al. eq. 4 with Schulman et al. 2017's clip):
    L = -E_i min(rho_i A, clip(rho_i, 1 - eps, 1 + eps) A),
    rho_i = pi_theta(x_{i+1} | x_i, c) / pi_old(x_{i+1} | x_i, c),
over the recorded transitions, for several inner epochs per batch of trajectories. As in
ddpo-pytorch, log rho is by default taken per element of the state (the log density ratio
divided by the state's size, `log_prob: mean`); `log_prob: sum` uses the exact ratio.

Adapted from kvablack/ddpo-pytorch (ddpo_pytorch/train.py, stat_tracking.py,
diffusers_patch/ddim_with_logprob.py). Differences: the step's log-density reuses the
scheduler's own `step` with zero noise for the mean and `posterior_std` for the spread
(`sampling.diffusion.transition_log_prob`, reached through the model's
`transition_log_prob`), so it is the sampler's formula by construction; DDIM's last step onto alpha_bar = 1
adds no noise, has no density and is not trained; the timesteps trained are shuffled per
minibatch, not per sample.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch

from graftbench.config import ConfigError, Count, Positive, PositiveShare
from graftbench.methods.loop import LoopConfig
from graftbench.methods.rollout import Rollout, denoiser, sample_segments
from graftbench.methods.updater import OptimConfig, Updater
from graftbench.models.base import FinetuneModel


@dataclass
class DDPOConfig:
    loop: LoopConfig = field(default_factory=LoopConfig)  # budget, rounds, sampler; must be
    # DDIM with eta > 0 (the policy needs a density)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=3e-4))  # ddpo-pytorch's
    # lr; batch_size = trajectories per optimiser step (gradients summed over their steps)
    inner_epochs: Count = 1  # PPO passes over each batch of trajectories
    clip_range: Positive = 1e-4  # PPO's eps on the importance ratio (ddpo-pytorch's default)
    log_prob: Literal["mean", "sum"] = "mean"  # the ratio's log-probs: "mean" over the state's
    # elements (ddpo-pytorch's convention, which its clip range and learning rates assume),
    # or "sum", the exact density ratio, whose log grows with the state's size (3x32x32:
    # one optimiser step moves it beyond 1e-3)
    adv_clip_max: Positive = 5.0  # advantages are clipped to [-adv_clip_max, adv_clip_max]
    timestep_fraction: PositiveShare = 1.0  # share of each trajectory's stochastic steps trained
    advantage: Literal["per_prompt", "batch"] = "per_prompt"  # normalise rewards by running
    # per-prompt statistics, or by the round's batch
    stat_buffer: Count = 16  # rewards remembered per prompt (the tracker's window)
    stat_min_count: Count = 16  # below this many remembered rewards a prompt uses batch statistics

    def __post_init__(self):
        if self.loop.scheduler != "ddim" or self.loop.eta <= 0:
            raise ConfigError(
                f"loop: DDPO needs scheduler 'ddim' with eta > 0, got "
                f"{self.loop.scheduler!r} with eta {self.loop.eta}"
            )


def ppo_loss(
    log_prob: torch.Tensor, old_log_prob: torch.Tensor, advantages: torch.Tensor, clip_range: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO's clipped surrogate, as a loss: mean(max(-A rho, -A clip(rho, 1 -+ eps))), and rho.
    All (batch,). Once rho leaves [1 - eps, 1 + eps] in the direction A favours, the loss is
    flat, so one batch cannot push the policy far from the one that sampled it."""
    ratio = torch.exp(log_prob - old_log_prob)
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1 - clip_range, 1 + clip_range)
    return torch.maximum(unclipped, clipped).mean(), ratio


class PromptStatTracker:
    """Per-prompt reward normalisation (ddpo-pytorch's PerPromptStatTracker): each prompt keeps
    its last `buffer` rewards; a prompt with fewer than `min_count` uses the batch's mean and
    std instead, since a few rewards give a poor baseline."""

    def __init__(self, buffer: int, min_count: int):
        self.buffer, self.min_count = buffer, min_count
        self.stats: dict[object, deque] = {}

    def advantages(self, keys: Sequence[object], rewards: torch.Tensor) -> torch.Tensor:
        """keys: (batch,) hashable prompt identities; rewards (batch,) -> advantages (batch,)."""
        out = torch.empty_like(rewards)
        for key in dict.fromkeys(keys):
            idx = torch.tensor([i for i, k in enumerate(keys) if k == key])
            buf = self.stats.setdefault(key, deque(maxlen=self.buffer))
            buf.extend(rewards[idx].tolist())
            ref = rewards if len(buf) < self.min_count else torch.tensor(list(buf))
            out[idx] = (rewards[idx] - ref.mean()) / (ref.std(correction=0) + 1e-6)
        return out


class DDPO:
    """DDPO on one model adapter, fine-tuned in place; `sample` and `update` make it a
    `loop.Method`."""

    def __init__(self, model: FinetuneModel, cfg: DDPOConfig):
        self.model, self.cfg = model, cfg
        self.scheduler = model.scheduler("ddim")
        self.updater = Updater(model, cfg.optim)
        self.tracker = PromptStatTracker(cfg.stat_buffer, cfg.stat_min_count)

    def state_dict(self) -> dict:
        """The updater's state and the per-prompt reward windows (advantages depend on them)."""
        return {
            **self.updater.state_dict(),
            "prompt_stats": {k: list(v) for k, v in self.tracker.stats.items()},
        }

    def load_state_dict(self, state: dict) -> None:
        self.updater.load_state_dict(state)
        self.tracker.stats = {
            k: deque(v, maxlen=self.tracker.buffer) for k, v in state["prompt_stats"].items()
        }

    def _denoiser(self, inputs: list, grad: bool = False):
        return denoiser(self.model, inputs, self.cfg.loop.guidance_scale, grad)

    def sample(self, inputs: list, generator: torch.Generator) -> Rollout:
        """Trajectories with every state (batch, *sample_shape) and the log-probs
        (batch, n_stochastic) of their stochastic steps."""
        return sample_segments(
            self.model,
            [(self._denoiser, None)],
            self.scheduler,
            inputs,
            self.cfg.loop,
            generator,
            keep=None,
        )

    def varying_accepts(self) -> None:
        return None  # every trajectory is trained on

    def advantages(self, inputs: list, rewards: torch.Tensor) -> torch.Tensor:
        """rewards (batch,), finite (loop.run stops on a non-finite one) -> clipped
        advantages (batch,)."""
        if self.cfg.advantage == "per_prompt":
            adv = self.tracker.advantages([_hashable(k) for k in inputs], rewards)
        else:
            adv = (rewards - rewards.mean()) / (rewards.std(correction=0) + 1e-6)
        return adv.clamp(-self.cfg.adv_clip_max, self.cfg.adv_clip_max)

    def update(self, rollout: Rollout, rewards: torch.Tensor, generator: torch.Generator) -> dict:
        """inner_epochs of PPO over the round's trajectories: per minibatch of trajectories,
        the loss of each trained step is back-propagated and one optimiser step follows."""
        cfg, traj = self.cfg, rollout.trajectory
        device = traj.sample.device
        adv = self.advantages(rollout.inputs, rewards.flatten()).to(device)
        # (batch, n_stochastic), recorded by the sampler; per element for "mean"
        scale = 1.0 / traj.sample[0].numel() if cfg.log_prob == "mean" else 1.0
        old = traj.log_probs * scale
        steps = traj.stochastic_steps
        n_train = max(1, math.ceil(cfg.timestep_fraction * len(steps)))
        self.scheduler.set_timesteps(cfg.loop.num_steps, device=device)  # as when sampled
        grad_encoder = cfg.optim.trainable == "full"
        losses, kls, clipped, first_dev = [], [], [], None
        for _ in range(cfg.inner_epochs):
            for b in torch.randperm(len(adv), generator=generator).split(cfg.optim.batch_size):
                inputs = [rollout.inputs[i] for i in b.tolist()]
                b = b.to(device)
                # a frozen encoder's prompts are encoded once; a trained one's graph is freed
                # by each backward, so it is rebuilt per step
                den = None if grad_encoder else self._denoiser(inputs)
                ratios = []
                for j in torch.randperm(len(steps), generator=generator)[:n_train].tolist():
                    i = steps[j]
                    x, t = traj.states[i][b], traj.timesteps[i]
                    out = (den or self._denoiser(inputs, True))(x, t.expand(len(b)))
                    lp = scale * self.model.transition_log_prob(
                        self.scheduler, out, t, x, traj.states[i + 1][b], cfg.loop.eta
                    )
                    loss, ratio = ppo_loss(lp, old[b, j], adv[b], cfg.clip_range)
                    (loss / n_train).backward()  # gradients summed over the trained steps
                    losses.append(loss.item())
                    kls.append(0.5 * (lp - old[b, j]).pow(2).mean().item())
                    clipped.append(((ratio - 1).abs() > cfg.clip_range).float().mean().item())
                    ratios.append(ratio.detach())
                if first_dev is None:  # before any update the policy is the sampler's: rho = 1
                    first_dev = (torch.cat(ratios) - 1).abs().max().item()
                self.updater.step()
        # n_accepted: every trajectory is trained on (the column GRAFT's rows also have)
        return {
            "n_accepted": len(adv),
            "policy_loss": float(np.mean(losses)),
            "approx_kl": float(np.mean(kls)),
            "clipfrac": float(np.mean(clipped)),
            "ratio_first_dev": first_dev,
            "advantage_abs_mean": adv.abs().mean().item(),
            "train_examples": len(adv) * n_train * cfg.inner_epochs,
        }


def _hashable(key: object) -> object:
    try:
        hash(key)
        return key
    except TypeError:
        return repr(key)
