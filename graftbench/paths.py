"""Probability paths: given data, noise and a time, return the noisy state and the training
target. The caller runs the model and writes the loss (torchcfm's split of duties)."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class PathSample:
    """t: (batch,) time in the model's timestep units; xt: (batch, ...) noisy state;
    target: (batch, ...) what the network should output at (xt, t)."""

    t: torch.Tensor
    xt: torch.Tensor
    target: torch.Tensor


def rectified_flow(x0: torch.Tensor, noise: torch.Tensor, sigma: torch.Tensor, scale: float = 1000):
    """Rectified flow / conditional OT path (Liu et al. 2023; Lipman et al. 2023, eq. 20):
    x_sigma = (1 - sigma) x0 + sigma * noise, target velocity d x_sigma / d sigma = noise - x0.
    sigma: (batch,) in [0, 1]; returned t = scale * sigma, diffusers' flow timestep units."""
    s = sigma.view(-1, *([1] * (x0.dim() - 1)))
    return PathSample(t=sigma * scale, xt=(1 - s) * x0 + s * noise, target=noise - x0)


def sample_sigma(batch: int, generator: torch.Generator, kind: str = "uniform") -> torch.Tensor:
    """Training times: "uniform" on [0, 1], or "logit_normal" (Esser et al. 2024, eq. 19,
    m = 0, s = 1), which weights the middle of the path where the velocity is hardest."""
    if kind == "uniform":
        return torch.rand(batch, generator=generator)
    if kind == "logit_normal":
        return torch.sigmoid(torch.randn(batch, generator=generator))
    raise ValueError(
        f"sigma_sampling: {kind!r} is not allowed; choose one of 'uniform', 'logit_normal'"
    )
