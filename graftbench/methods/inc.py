"""Inverse noise correction (INC) for flow models: invert real data through the base
generator, learn the law of the inverted noise with a small flow, sample through both.

The base sampler T (N Euler steps of the learned velocity) maps N(0, I) to the model's
output law. T is invertible, so real data x has a unique "inverted noise" z = T^{-1}(x);
because the model is imperfect (learning and discretisation errors), the law of z is not
N(0, I). A correction flow C trained by flow matching from N(0, I) to the law of z gives
the sampler eps -> C -> z -> T -> x, whose output law is the data law exactly when C is
exact. One corrector per base step count, since T (and so z) depends on it.

Everything here takes plain velocity callables `(x, sigma) -> v` and tensors, so the same
code runs the pixel UNets of the unconditional task and the 2-D toy of the tests.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import torch
from tqdm.auto import tqdm

from graftbench.config import Count, Counts, Natural, NonNegative, Positive, Share
from graftbench.models.config import UNetConfig
from graftbench.sampling.flow import Velocity, invert_euler, solve_flow
from graftbench.train import TrainConfig


@dataclass
class InversionConfig:
    n_images: Natural = 2000  # training images inverted per base step count (0 = all of them)
    batch_size: Count = 500  # images per fixed-point solve
    max_iters: Count = 50  # fixed-point iterations per Euler step before giving up
    tol: Positive = 1e-4  # stop a step's iteration when the update is below this (sup norm)
    perturb: NonNegative = (
        0.0  # std of Gaussian noise added to the data first (paper: 1e-3 on LSUN)
    )
    holdout: Share = 0.1  # share of the inverted noise kept out of corrector training, for
    # diagnostics


@dataclass
class CorrectorTrainConfig(TrainConfig):
    sigma_sampling: Literal["uniform", "logit_normal"] = "logit_normal"  # law of sigma in training
    eval_every: Natural = 0  # steps between held-out losses of the EMA (0 = none: train `steps`)
    patience: Natural = 0  # evaluations without improvement before stopping early (0 = never);
    # `steps` is then the maximum, and the EMA at the best evaluation is kept
    min_delta: NonNegative = 0.0  # relative fall of the held-out loss that counts as an improvement
    eval_draws: Count = 4  # fixed (sigma, noise) draws per held-out example in that loss


@dataclass
class IncConfig:
    base_steps: Counts = field(default_factory=lambda: [4, 8])  # base Euler steps that get
    # a corrector (one inversion and one corrector each)
    corrector_steps: Counts = field(default_factory=lambda: [2, 4])  # corrector Euler
    # steps swept
    invert: InversionConfig = field(default_factory=InversionConfig)  # inverting the data
    model: UNetConfig = field(default_factory=UNetConfig)  # the corrector (smaller than the base)
    train: CorrectorTrainConfig = field(default_factory=CorrectorTrainConfig)  # its training


@dataclass
class Inverted:
    """noise:      (n, ...) inverted noise z with T(z) ~= data.
    iterations: (n_batches, steps) fixed-point iterations per Euler step (max over a batch).
    residual:   (n_batches, steps) sup-norm miss of each step's forward Euler from its target.
    recon_rms / recon_max: RMS and max |T(z) - x| of inverse-then-forward, over all images.
    nfe:        network evaluations per image spent inverting."""

    noise: torch.Tensor
    iterations: torch.Tensor
    residual: torch.Tensor
    recon_rms: float
    recon_max: float
    nfe: int


@torch.no_grad()
def invert_data(
    velocity: Velocity,
    data: torch.Tensor,
    sigmas: torch.Tensor,
    cfg: InversionConfig,
    generator: torch.Generator,
) -> Inverted:
    """Invert `data` (n, ...) through the Euler map on `sigmas` (the base sampler), batch by
    batch, then push the noise forward again to measure the reconstruction error."""
    noise, iters, resid, sq, worst, nfe = [], [], [], 0.0, 0.0, 0
    for x in tqdm(data.split(cfg.batch_size), desc=f"invert {len(sigmas) - 1} steps", disable=None):
        if cfg.perturb > 0:
            # drawn on the generator's CPU and moved, so every device gets the same noise
            x = x + cfg.perturb * torch.randn(x.shape, generator=generator).to(x.device)
        res = invert_euler(velocity, x, sigmas, max_iters=cfg.max_iters, tol=cfg.tol)
        back, _ = solve_flow(velocity, res.noise, sigmas)
        err = back - x
        sq += err.square().sum().item()
        worst = max(worst, err.abs().max().item())
        noise.append(res.noise)
        iters.append(res.iterations)
        resid.append(res.residual)
        nfe += res.nfe * len(x)
    return Inverted(
        noise=torch.cat(noise),
        iterations=torch.stack(iters),
        residual=torch.stack(resid),
        recon_rms=(sq / data.numel()) ** 0.5,
        recon_max=worst,
        nfe=nfe // len(data),
    )


def corrector_loss(
    denoise: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    noise: torch.Tensor,
    batch_size: int,
    sigma_sampling: str,
) -> Callable[[int, torch.Generator], torch.Tensor]:
    """The flow-matching loss of the corrector, as graftbench.train.fit's loss callable.

    The corrector's "data" is the inverted noise z (at sigma = 0) and its source is N(0, I)
    (at sigma = 1), on the rectified-flow path (graftbench.paths.rectified_flow), so it is
    sampled by the same solver as the base. denoise(x_t, t) -> v with t = 1000 sigma.
    Batches and noise come from fit's CPU generator and move to `noise`'s device, which
    should be the corrector's."""
    from graftbench.paths import rectified_flow, sample_sigma

    def loss(step: int, g: torch.Generator) -> torch.Tensor:
        z = noise[torch.randint(len(noise), (batch_size,), generator=g)]
        eps = torch.randn(z.shape, generator=g).to(z.device)
        path = rectified_flow(z, eps, sample_sigma(batch_size, g, sigma_sampling).to(z.device))
        return torch.nn.functional.mse_loss(denoise(path.xt, path.t), path.target)

    return loss


def heldout_loss(
    denoise: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    noise: torch.Tensor,
    draws: int,
    batch_size: int,
    sigma_sampling: str,
    seed: int,
) -> float:
    """The loss of `corrector_loss` on held-out inverted noise (n, ...), each example with
    `draws` (sigma, eps) pairs drawn once from `seed`: the same pairs at every call, so
    successive evaluations differ only by the weights. denoise should be in eval mode."""
    from graftbench.paths import rectified_flow, sample_sigma

    g = torch.Generator().manual_seed(seed)
    z = noise.repeat_interleave(draws, 0)
    eps = torch.randn(z.shape, generator=g)
    sigma = sample_sigma(len(z), g, sigma_sampling)
    total = 0.0
    with torch.no_grad():
        for zb, eb, sb in zip(
            z.split(batch_size), eps.split(batch_size), sigma.split(batch_size), strict=True
        ):
            path = rectified_flow(zb, eb.to(zb.device), sb.to(zb.device))
            err = denoise(path.xt, path.t) - path.target
            total += err.square().sum().item()
    return total / z.numel()


@torch.no_grad()
def sample(
    corrector: Velocity | None,
    base: Velocity,
    eps: torch.Tensor,
    corrector_sigmas: torch.Tensor | None,
    base_sigmas: torch.Tensor,
) -> tuple[torch.Tensor, int, int]:
    """eps (batch, ...) ~ N(0, I) -> corrector -> z -> base -> x; returns (x, corrector NFE,
    base NFE). With corrector None this is the base sampler alone."""
    z, nfe_c = (eps, 0) if corrector is None else solve_flow(corrector, eps, corrector_sigmas)
    x, nfe_b = solve_flow(base, z, base_sigmas)
    return x, nfe_c, nfe_b


def energy_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Energy distance 2 E|X-Y| - E|X-X'| - E|Y-Y'| (Szekely & Rizzo 2013, eq. 2) between
    samples a (n, ...) and b (m, ...), with the unbiased (off-diagonal) within-sample means.
    Zero iff the laws agree; no bandwidth to tune, unlike an RBF MMD. Written here because
    scipy's version is one-dimensional only."""
    a, b = a.flatten(1).double(), b.flatten(1).double()
    n, m = len(a), len(b)
    ab = torch.cdist(a, b).mean()
    aa = torch.cdist(a, a).sum() / (n * (n - 1))
    bb = torch.cdist(b, b).sum() / (m * (m - 1))
    return (2 * ab - aa - bb).item()


def noise_diagnostics(
    z: torch.Tensor, generator: torch.Generator, corrected: torch.Tensor | None = None
) -> dict:
    """How far the inverted noise z (n, ...) is from N(0, I), and (given `corrected`, samples
    of the corrector) how far the corrector's law is from z's.

    Per-dimension moments of z (each pixel is one dimension): mean |mean|, mean |std - 1|,
    mean |excess kurtosis|, all 0 for N(0, I) up to sampling error; energy distances of z to
    a fresh N(0, I) sample of the same size (`before`), of `corrected` to z (`after`), and of
    two N(0, I) samples (`null`: the level sampling error alone gives)."""
    flat = z.flatten(1).double()
    mean, std = flat.mean(0), flat.std(0)
    kurt = (((flat - mean) / std) ** 4).mean(0) - 3
    gauss = [torch.randn(z.shape, generator=generator) for _ in range(2)]
    out = {
        "n": len(z),
        "mean_abs_mean": mean.abs().mean().item(),
        "mean_abs_std_minus_1": (std - 1).abs().mean().item(),
        "mean_abs_excess_kurtosis": kurt.abs().mean().item(),
        "rms": flat.square().mean().sqrt().item(),
        "energy_before": energy_distance(z, gauss[0]),
        "energy_null": energy_distance(gauss[0], gauss[1]),
    }
    if corrected is not None:
        out["energy_after"] = energy_distance(z, corrected)
        out["corrected_rms"] = corrected.flatten(1).double().square().mean().sqrt().item()
    return out
