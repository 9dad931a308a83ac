"""The adapter base of DDPM-family models (epsilon or v prediction on a Gaussian schedule):
the small text-to-image model, Stable Diffusion and the layout model.

What it adds to `ModelAdapter`: the schedule (`alphas_cumprod`), the denoising loss of
pre-training and GRAFT (`losses.denoising_loss`), P-GRAFT's loss from an intermediate state
(`losses.intermediate_loss`) and the Gaussian density of a DDIM/DDPM step that DDPO needs
(`sampling.diffusion.transition_log_prob`).
"""

from __future__ import annotations

import torch

from graftbench import losses
from graftbench.models.base import ModelAdapter
from graftbench.sampling.diffusion import transition_log_prob


class DiffusionAdapter(ModelAdapter):
    """alphas_cumprod: (T,) alpha_bar_t of the forward process, set by the subclass.
    min_snr_gamma: Min-SNR loss weighting (`losses.weighted_mean`); None: unweighted."""

    alphas_cumprod: torch.Tensor
    min_snr_gamma: float | None = None

    def training_loss(self, x0, cond, generator, t_min: int = 0, anchor=None) -> torch.Tensor:
        """`losses.denoising_loss`; anchor: (frozen base adapter, weight) or None."""
        return losses.denoising_loss(self, x0, cond, generator, t_min, anchor)

    def intermediate_loss(self, x_i, cond, t_i: int, generator) -> torch.Tensor:
        """`losses.intermediate_loss`: the DDPM kernel from t_I, trained on t > t_I."""
        return losses.intermediate_loss(self, x_i, cond, t_i, generator)

    def transition_log_prob(self, scheduler, out, t, x, nxt, eta: float) -> torch.Tensor:
        """`sampling.diffusion.transition_log_prob`: the Gaussian DDIM step's density."""
        return transition_log_prob(scheduler, out, t, x, nxt, eta)


def ddpm_scheduler(kind: str, **schedule):
    """A fresh diffusers scheduler on a training schedule (`schedule`: DDPMScheduler's and
    DDIMScheduler's shared arguments) for kind "ddpm" (the posterior's "fixed_small" variance)
    or "ddim" (its last step lands on alpha_bar = 1, a clean sample)."""
    from diffusers import DDIMScheduler, DDPMScheduler

    if kind == "ddpm":
        return DDPMScheduler(**schedule, variance_type="fixed_small")
    if kind == "ddim":
        return DDIMScheduler(**schedule, set_alpha_to_one=True)
    raise ValueError(f"scheduler: {kind!r} is not allowed; choose one of 'ddpm', 'ddim'")
