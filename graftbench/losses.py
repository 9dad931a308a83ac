"""The denoising loss every DDPM-family model here pre-trains with and GRAFT fine-tunes with
(SD's: a uniform timestep, DDPM noising with the scheduler's alpha_bar, MSE to the epsilon or
v target, Min-SNR weighted when the model's config asks)."""

from __future__ import annotations

import torch

from graftbench.paths import ddpm_pair


def denoising_loss(
    model,
    x0: torch.Tensor,
    cond: torch.Tensor,
    generator: torch.Generator,
    t_min: int = 0,
    anchor: tuple | None = None,
):
    """Squared error of model.denoise over t ~ U{t_min, ..., T-1} and Gaussian noise, averaged
    per sample, Min-SNR weighted if model.cfg.min_snr_gamma is set, then averaged over the
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
    Min-SNR-gamma weighted (Hang et al. 2023) when the adapter's config sets min_snr_gamma:
    the x0-space weight min(SNR, gamma), divided by what the parameterisation already
    carries (SNR for epsilon, SNR + 1 for v)."""
    gamma = getattr(getattr(model, "cfg", None), "min_snr_gamma", None)
    if gamma is None:
        return err.mean()
    snr = abar_t / (1 - abar_t)
    base = snr if model.prediction_type == "epsilon" else snr + 1
    return (err * snr.clamp(max=gamma) / base).mean()
