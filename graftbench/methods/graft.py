"""GRAFT: generalised rejection-sampling fine-tuning (DESIGN.md, "GRAFT"; the paper's sec. 3).

Per round and condition c: draw M samples x ~ p_theta(. | c), score r(x, c), accept a subset
by a rule of `selection` (top-K of M, best-of-N, threshold, RSO), optionally after
de-duplication, and fine-tune on the accepted x with the model's own denoising loss, the
loss of pre-training. The accepted samples follow
    p_acc(x | c) = p_theta(x | c) exp(r_hat(x, c) / alpha) / Z(c),
e.g. exp(r_hat / alpha) = (M / K) sum_{j<K} C(M-1, j) (1 - F)^j F^(M-1-j) for top-K of M
(F: the CDF of r under p_theta(. | c)), so fitting them solves KL-regularised maximisation of
the reshaped reward r_hat (the paper's reshaped-reward lemma). Several online rounds resample
from the updated model and compound the reshaping.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from graftbench.config import ConfigError, Count, Natural, NonNegative
from graftbench.methods.loop import LoopConfig
from graftbench.methods.rollout import Rollout, denoiser, encode, sample_segments
from graftbench.methods.selection import SelectionConfig, select
from graftbench.methods.updater import OptimConfig, Updater
from graftbench.models.base import FinetuneModel
from graftbench.models.diffusion import DiffusionAdapter

# (model, x (batch, ...) training "data" in model space, cond, generator) -> scalar loss
DenoisingLoss = Callable[[FinetuneModel, torch.Tensor, Any, torch.Generator], torch.Tensor]


@dataclass
class GraftConfig:
    loop: LoopConfig = field(default_factory=LoopConfig)  # budget, rounds, sampler
    selection: SelectionConfig = field(default_factory=SelectionConfig)  # acceptance rule
    optim: OptimConfig = field(default_factory=OptimConfig)  # optimiser, full/unet/LoRA
    epochs: Count = 1  # passes over each round's accepted set (RAFT trains epochs on it)
    t_min: Natural = 0  # fit the accepted samples only at timesteps t >= t_min (0: the loss of
    # pre-training, as GRAFT specifies). Fitting the model's own samples at low noise teaches
    # the denoiser their residual errors (a single-seed hypothesis: on layouts, t_min = 100
    # turned that drift into a gain, docs/notes/2026-12-03-t2i-graft-investigations.md);
    # GRAFT only, P-GRAFT trains t > t_I
    anchor: NonNegative = 0.0  # weight of a penalty on the fine-tuned model's outputs moving away
    # from the pre-trained model's at the same noised sample (losses.denoising_loss), added
    # to the loss; 0: GRAFT as specified. Fitting a small model's own samples can drift it
    # below the base faster than selection lifts it (t2i seed 0: -0.17 with no selection at
    # lr 1e-4, -0.005 with anchor 1; docs/notes/2026-12-03-t2i-graft-investigations.md). Keeps a second, frozen copy of the
    # network in memory. Denoising losses only: not P-GRAFT's, not a discrete model's

    def __post_init__(self):
        sel, m = self.selection, self.loop.samples_per_prompt
        if sel.rule == "top_k" and not 1 <= sel.k <= m:
            raise ConfigError(f"selection.k: {sel.k} must lie in 1..samples_per_prompt={m}")


def frozen_copy(model: FinetuneModel) -> FinetuneModel:
    """The adapter with a deep-copied, frozen network; everything else (tokenizer, schedule,
    config) is shared, read-only."""
    base = copy.copy(model)
    base.network = copy.deepcopy(model.network).requires_grad_(False)
    return base


def sample_key(sample: Any) -> Hashable:
    """Identity of one decoded sample for de-duplication: its bytes (exact copies only; a
    task with a canonical form, such as SMILES, passes its own key)."""
    if isinstance(sample, torch.Tensor):
        return sample.detach().cpu().numpy().tobytes()
    if isinstance(sample, np.ndarray):
        return sample.tobytes()
    return sample


class Graft:
    """GRAFT on one model adapter, fine-tuned in place; `sample` and `update` make it a
    `loop.Method`.

    loss_fn: the loss on accepted final samples, default the model's own `training_loss`
    (the loss of pre-training: `losses.denoising_loss` for a `DiffusionAdapter`). dedup_key:
    identity of a decoded sample.
    """

    def __init__(
        self,
        model: FinetuneModel,
        cfg: GraftConfig,
        loss_fn: DenoisingLoss | None = None,
        dedup_key: Callable[[Any], Hashable] = sample_key,
    ):
        self.model, self.cfg, self.loss_fn, self.dedup_key = model, cfg, loss_fn, dedup_key
        if cfg.anchor and (loss_fn is not None or not isinstance(model, DiffusionAdapter)):
            raise ConfigError(
                f"anchor: {cfg.anchor}; it anchors the denoising loss, and this "
                "model trains with its own loss (set anchor: 0)"
            )
        # the pre-trained model, copied before the Updater touches (or adds LoRA to) the network
        self.anchor_base = frozen_copy(model) if cfg.anchor else None
        self.scheduler = model.scheduler(cfg.loop.scheduler)
        self.updater = Updater(model, cfg.optim)

    def state_dict(self) -> dict:
        return self.updater.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.updater.load_state_dict(state)

    def _factory(self, model: FinetuneModel):
        return lambda inputs: denoiser(model, inputs, self.cfg.loop.guidance_scale)

    def sample(self, inputs: list, generator: torch.Generator) -> Rollout:
        """(batch,) inputs -> Rollout with x_0 (batch, *sample_shape), no other state kept."""
        n = self.cfg.loop.num_steps
        return sample_segments(
            self.model,
            [(self._factory(self.model), None)],
            self.scheduler,
            inputs,
            self.cfg.loop,
            generator,
            keep={n},
        )

    def accept(self, rollout: Rollout, rewards: torch.Tensor, generator: torch.Generator):
        """rewards (groups, M) -> accepted sample indices (n_accepted,) into the rollout."""
        groups, m = rewards.shape
        keys = None
        if self.cfg.selection.dedup:
            keys = [
                [self.dedup_key(s) for s in rollout.decoded[i * m : (i + 1) * m]]
                for i in range(groups)
            ]
        return select(rewards, self.cfg.selection, generator, keys).flatten().nonzero().flatten()

    def training_data(self, rollout: Rollout) -> tuple[torch.Tensor, DenoisingLoss, dict]:
        """What an accepted sample contributes: its final x_0 (batch, ...) under loss_fn."""
        if self.loss_fn is not None:
            return rollout.final, self.loss_fn, {}
        t_min = self.cfg.t_min
        if t_min >= len(self.model.alphas_cumprod):
            raise ConfigError(
                f"t_min: {t_min} must be below the model's "
                f"{len(self.model.alphas_cumprod)} training timesteps"
            )

        anchor = (self.anchor_base, self.cfg.anchor) if self.anchor_base is not None else None

        def loss(model, x, cond, generator):
            return model.training_loss(x, cond, generator, t_min, anchor)

        return rollout.final, loss, {}

    def varying_accepts(self) -> str | None:
        sel = self.cfg.selection
        if sel.rule in ("threshold", "rso") or sel.dedup:
            return (
                f"selection.rule: {sel.rule!r}{' with dedup' if sel.dedup else ''} accepts a "
                "varying number of samples per rank, so the ranks would take different numbers "
                "of optimiser steps; on several ranks use top_k or best_of_n without dedup"
            )
        return None

    def update(self, rollout: Rollout, rewards: torch.Tensor, generator: torch.Generator) -> dict:
        """Accept, then fit the accepted samples' training data (`training_data`)."""
        idx = self.accept(rollout, rewards, generator)
        data, loss_fn, extra = self.training_data(rollout)
        stats = self.train_on(
            data[idx.to(data.device)], [rollout.inputs[i] for i in idx.tolist()], loss_fn, generator
        )
        accepted = rewards.flatten()[idx]  # finite: loop.run stops on a non-finite reward
        return {
            "n_accepted": len(idx),
            "accepted_reward_mean": accepted.mean().item() if len(accepted) else float("nan"),
            **extra,
            **stats,
        }

    def train_on(
        self, x: torch.Tensor, inputs: list, loss_fn: DenoisingLoss, generator: torch.Generator
    ) -> dict:
        """`epochs` shuffled passes over (x (n, ...), inputs (n,)), one optimiser step per
        minibatch of optim.batch_size. An empty accepted set (threshold, RSO) trains nothing."""
        losses, bs = [], self.cfg.optim.batch_size
        grad_encoder = self.cfg.optim.trainable == "full"
        for _ in range(self.cfg.epochs if len(x) else 0):
            for b in torch.randperm(len(x), generator=generator).split(bs):
                cond = encode(self.model, [inputs[i] for i in b.tolist()], grad_encoder)
                loss = loss_fn(self.model, x[b.to(x.device)], cond, generator)
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"fine-tuning loss is {loss.item()}")
                loss.backward()
                self.updater.step()
                losses.append(loss.item())
        return {
            "train_loss": float(np.mean(losses)) if losses else float("nan"),
            "train_steps": len(losses),
            "train_examples": len(x) * self.cfg.epochs,
        }
