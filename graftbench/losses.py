"""The losses of DDPM-family models (`models.diffusion.DiffusionAdapter`): the denoising loss
every such model pre-trains with and GRAFT fine-tunes with (SD's: a uniform timestep, DDPM
noising with the scheduler's alpha_bar, MSE to the epsilon or v target, Min-SNR weighted when
the model asks), and P-GRAFT's loss with an intermediate state as the data. `model` is a
`DiffusionAdapter` throughout (annotations left off: models.diffusion imports this module)."""

from __future__ import annotations

from typing import Any

import torch

from graftbench.paths import ddpm_from_intermediate, ddpm_pair


def denoising_loss(
    model,
    x0: torch.Tensor,
    cond: torch.Tensor,
    generator: torch.Generator,
    t_min: int = 0,
    anchor: tuple | None = None,
):
    """Squared error of model.denoise over t ~ U{t_min, ..., T-1} and Gaussian noise, averaged
    per sample, Min-SNR weighted if model.min_snr_gamma is set, then averaged over the
    batch: the loss of pre-training and of GRAFT's fine-tuning alike. model: any adapter with
    alphas_cumprod, prediction_type and denoise (a Text2ImageAdapter, a LayoutAdapter); x0
    (batch, *sample_shape) in model space; cond: what model.encode_condition returned. Noise
    and t come from `generator` (on the CPU, as train.fit's) and move to x0's device.
    t_min > 0 leaves the low-noise end out (GRAFT's `t_min`). anchor (base, weight): adds
    weight x the squared distance between model's and the frozen base's outputs at the same
    (x_t, t, cond), weighted alike (GRAFT's `anchor`): for a diffusion model that distance,
    integrated over t, is the KL between the two models' reverse processes up to the
    weighting, so the loss's minimiser is (E[target | x_t] + weight x base) / (1 + weight)
    rather than the fitted data's alone."""
    t = torch.randint(t_min, len(model.alphas_cumprod), (len(x0),), generator=generator)
    noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype)
    t, noise = t.to(x0.device), noise.to(x0.device)
    abar = model.alphas_cumprod.to(x0.device)
    pair = ddpm_pair(x0, noise, t, abar, model.prediction_type)
    out = model.denoise(pair.xt, pair.t, cond)
    err = (out - pair.target).pow(2).flatten(1).mean(1)
    if anchor is not None:
        base, weight = anchor
        with torch.no_grad():
            ref = base.denoise(pair.xt, pair.t, cond)
        err = err + weight * (out - ref).pow(2).flatten(1).mean(1)
    return weighted_mean(model, err, abar[t])


def weighted_mean(model, err: torch.Tensor, abar_t: torch.Tensor) -> torch.Tensor:
    """Batch mean of per-sample squared errors err (batch,) at noise levels abar_t (batch,),
    Min-SNR-gamma weighted (Hang et al. 2023) when the adapter's min_snr_gamma is set:
    the x0-space weight min(SNR, gamma), divided by what the parameterisation already
    carries (SNR for epsilon, SNR + 1 for v)."""
    gamma = model.min_snr_gamma
    if gamma is None:
        return err.mean()
    snr = abar_t / (1 - abar_t)
    base = snr if model.prediction_type == "epsilon" else snr + 1
    return (err * snr.clamp(max=gamma) / base).mean()


def intermediate_loss(
    model, x_i: torch.Tensor, cond: Any, t_i: int, generator: torch.Generator
) -> torch.Tensor:
    """Denoising loss with the intermediate state as data: t ~ U{t_I + 1, ..., T - 1}, pair from
    `paths.ddpm_from_intermediate`, squared error per sample, weighted, then Min-SNR weighted
    as pre-training (`losses.weighted_mean`). Any positive weight per t keeps the minimiser,
    the conditional expectation of the target, so the weights only set how much each t pulls.

    The per-t weight w(t) = (1 - abar_t / abar_I) / (1 - abar_t) is 1 / c(t)^2, c(t) the
    scale of the epsilon target c(t) * eps' (`ddpm_from_intermediate`): c(t) grows without
    bound as t -> t_I (at t = t_I + 1, c^2 ~ (1 - abar_t) / beta_t, e.g. ~160 at t_I = 500 on
    the cosine schedule), so unweighted, the few draws just above t_I carry squared errors
    of 1e2-1e3, dominate every gradient (which clipping then shrinks to a random direction)
    and make P-GRAFT drift the model away from what it fits. Weighted, the regression has a
    unit-variance target at every t, as pre-training's has.
    x_i: (batch, *sample_shape) on the model's device; noise and t from `generator` on the
    CPU, as in pre-training."""
    abar = model.alphas_cumprod.to(x_i.device)
    t = torch.randint(t_i + 1, len(abar), (len(x_i),), generator=generator)
    noise = torch.randn(x_i.shape, generator=generator, dtype=x_i.dtype)
    t, noise = t.to(x_i.device), noise.to(x_i.device)
    pair = ddpm_from_intermediate(
        x_i, noise, t, torch.full_like(t, t_i), abar, model.prediction_type
    )
    err = (model.denoise(pair.xt, pair.t, cond) - pair.target).pow(2).flatten(1).mean(1)
    return weighted_mean(model, err * target_weight(abar, t, t_i), abar[t])


def target_weight(abar: torch.Tensor, t: torch.Tensor, t_i: int) -> torch.Tensor:
    """(batch,) 1 / c(t)^2 = (1 - abar_t / abar_I) / (1 - abar_t) for timesteps t > t_I: the
    inverse squared scale of P-GRAFT's epsilon target (see `intermediate_loss`)."""
    return (1 - abar[t] / abar[t_i]) / (1 - abar[t])
