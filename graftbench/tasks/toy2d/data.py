"""The toy2d data law and reward, both in closed form: an even mixture of isotropic Gaussians
on a circle, and a smooth bump that prefers the modes near one direction."""

from __future__ import annotations

import math

import torch

from graftbench.tasks.toy2d.config import BumpReward, RingConfig


def centres(cfg: RingConfig) -> torch.Tensor:
    """(modes, 2) the mixture's means, mode k at angle 2 pi k / modes."""
    a = torch.arange(cfg.modes, dtype=torch.float64) * 2 * math.pi / cfg.modes
    return (cfg.radius * torch.stack([a.cos(), a.sin()], 1)).float()


def sample(cfg: RingConfig, n: int, generator: torch.Generator) -> torch.Tensor:
    """(n, 2) exact draws from the data law."""
    k = torch.randint(cfg.modes, (n,), generator=generator)
    return centres(cfg)[k] + cfg.std * torch.randn(n, 2, generator=generator)


def training_points(cfg: RingConfig) -> torch.Tensor:
    """The fixed training set (n_train points, seeded by cfg.seed)."""
    return sample(cfg, cfg.n_train, torch.Generator().manual_seed(cfg.seed))


def log_density(cfg: RingConfig, x: torch.Tensor) -> torch.Tensor:
    """(n,) log p_data(x), exactly."""
    d2 = torch.cdist(x.double(), centres(cfg).double()).square()
    log_k = -d2 / (2 * cfg.std**2) - math.log(2 * math.pi * cfg.std**2) - math.log(cfg.modes)
    return torch.logsumexp(log_k, 1)


OFF_MODE_STDS = 3.0  # a point this many stds from every mode's mean is "off mode"


def off_mode_share(cfg: RingConfig, x: torch.Tensor) -> float:
    """Share of points (n, 2) farther than OFF_MODE_STDS stds from every mode's mean: the mass
    a model puts between the modes. The data law's own share is exp(-OFF_MODE_STDS^2 / 2)
    (1.1% at 3 stds: a 2-D Gaussian's radius is Rayleigh), as modes this far apart barely
    overlap."""
    d = torch.cdist(x.float(), centres(cfg)).min(1).values
    return (d > OFF_MODE_STDS * cfg.std).float().mean().item()


def reward_centre(cfg: RingConfig, reward: BumpReward) -> torch.Tensor:
    a = math.radians(reward.angle)
    return torch.tensor([cfg.radius * math.cos(a), cfg.radius * math.sin(a)])


def bump(cfg: RingConfig, reward: BumpReward):
    """The reward r(x) = exp(-|x - c|^2 / (2 width^2)) as the loop calls it:
    (points (n, 2), conditions) -> (n,)."""
    c = reward_centre(cfg, reward)

    def r(x: torch.Tensor, conditions=None) -> torch.Tensor:
        d2 = (x.float() - c.to(x.device)).square().sum(1)
        return torch.exp(-d2 / (2 * reward.width**2))

    return r
