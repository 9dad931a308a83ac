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


def ddpm_pair(
    x0: torch.Tensor,
    noise: torch.Tensor,
    t: torch.Tensor,
    alphas_cumprod: torch.Tensor,
    prediction_type: str = "epsilon",
) -> PathSample:
    """The DDPM training pair at integer timesteps t (batch,), for data x0 (batch, ...):
        x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps      (Ho et al. 2020, eq. 4),
    target eps, or v = sqrt(abar_t) eps - sqrt(1 - abar_t) x0 (Salimans & Ho 2022, sec. 4),
    the same as diffusers' DDPMScheduler.add_noise / get_velocity."""
    abar = alphas_cumprod.to(x0)[t].view(-1, *([1] * (x0.dim() - 1)))
    xt = abar.sqrt() * x0 + (1 - abar).sqrt() * noise
    if prediction_type == "epsilon":
        target = noise
    elif prediction_type == "v_prediction":
        target = abar.sqrt() * noise - (1 - abar).sqrt() * x0
    else:
        raise ValueError(
            f"prediction_type: {prediction_type!r}; choose 'epsilon' or 'v_prediction'"
        )
    return PathSample(t=t, xt=xt, target=target)


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


def ddpm_from_intermediate(
    x_i: torch.Tensor,
    noise: torch.Tensor,
    t: torch.Tensor,
    t_i: torch.Tensor,
    alphas_cumprod: torch.Tensor,
    prediction_type: str = "epsilon",
) -> PathSample:
    """P-GRAFT's training pair for a DDPM-family model, with the intermediate state x_I as data.

    P-GRAFT fine-tunes only t in (t_I, T] on accepted states x_I = x_{t_I}. The forward
    process started at x_I is (DDPM, Ho et al. 2020, eq. 4, composed from t_I to t):
        x_t | x_I ~ N(sqrt(abar_t / abar_I) x_I, (1 - abar_t / abar_I) I),
    so x_t = sqrt(abar_t / abar_I) x_I + sqrt(1 - abar_t / abar_I) eps'. Denoising score
    matching with this kernel regresses the score of the marginal p_t onto
        grad log q(x_t | x_I) = -eps' / sqrt(1 - abar_t / abar_I).
    The model's own parameterisation expresses the same score: an epsilon model means
    eps_theta = -sqrt(1 - abar_t) * score, hence the target
        eps_target = sqrt(1 - abar_t) / sqrt(1 - abar_t / abar_I) * eps',
    which is not eps' (the two agree only as t_I -> 0, where abar_I -> 1). For v-prediction,
    v = sqrt(abar_t) eps - sqrt(1 - abar_t) x0 with E[x0 | x_t] = (x_t - sqrt(1 - abar_t) eps)
    / sqrt(abar_t) gives v_target = (eps_target - sqrt(1 - abar_t) x_t) / sqrt(abar_t).

    x_i, noise: (batch, ...); t, t_i: (batch,) integer timesteps with t > t_i.
    """
    if (t <= t_i).any():
        raise ValueError("P-GRAFT trains only t > t_I")
    view = (-1, *([1] * (x_i.dim() - 1)))
    abar_t = alphas_cumprod[t].view(view).to(x_i)
    abar_i = alphas_cumprod[t_i].view(view).to(x_i)
    ratio = abar_t / abar_i
    xt = ratio.sqrt() * x_i + (1 - ratio).sqrt() * noise
    eps_target = (1 - abar_t).sqrt() / (1 - ratio).sqrt() * noise
    if prediction_type == "epsilon":
        target = eps_target
    elif prediction_type == "v_prediction":
        target = (eps_target - (1 - abar_t).sqrt() * xt) / abar_t.sqrt()
    else:
        raise ValueError(
            f"prediction_type: {prediction_type!r}; choose 'epsilon' or 'v_prediction'"
        )
    return PathSample(t=t, xt=xt, target=target)
