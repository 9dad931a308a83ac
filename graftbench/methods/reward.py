"""The reward as the fine-tuning loop sees it: any callable (samples, conditions) -> (batch,)
scores, counted against the budget (`RewardCounter`); `image_reward` adapts an image reward
to the decoded images the loop passes."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

Reward = Callable[[Any, Sequence[Any]], Any]  # (samples, conditions) -> Tensor/ndarray (batch,)


class RewardCounter:
    """Wraps a reward: counts every sample scored and refuses to pass the budget."""

    def __init__(self, reward: Reward, budget: int):
        self.reward, self.budget, self.queries = reward, budget, 0

    @property
    def remaining(self) -> int:
        return self.budget - self.queries

    def __call__(self, samples, conditions: Sequence) -> torch.Tensor:
        """-> (batch,) float32 rewards on the CPU."""
        if self.queries + len(conditions) > self.budget:
            raise RuntimeError(f"reward budget {self.budget} exceeded")
        r = torch.as_tensor(self.reward(samples, conditions)).detach().to("cpu", torch.float32)
        if r.shape != (len(conditions),):
            raise ValueError(f"reward: expected shape ({len(conditions)},), got {tuple(r.shape)}")
        self.queries += len(conditions)
        return r


def image_reward(reward: Reward) -> Reward:
    """Adapt an image reward taking (batch, H, W, C) uint8 (e.g. `t2i.verifier.verifier_reward`)
    to what the loop passes: `decode`'s (batch, C, H, W) floats in [0, 1]."""

    def wrapped(images: torch.Tensor, conditions: Sequence) -> Any:
        u8 = (images.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1)
        return reward(u8.cpu().numpy(), conditions)

    return wrapped
