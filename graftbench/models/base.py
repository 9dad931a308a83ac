"""What the samplers, the fine-tuning loop and the methods need of a model, declared once.

`FinetuneModel` is that interface as a Protocol: the loop, GRAFT, P-GRAFT and DDPO are written
against it and call nothing else. `ModelAdapter` implements it with the defaults of a
continuous model (Gaussian start, diffusers-scheduler sampler, plain conditional denoiser,
full fine-tuning); `models.diffusion.DiffusionAdapter` adds the DDPM losses and step
densities; a model that differs (the masked molecule diffusion: token states, its own
sampler and cross-entropy losses) overrides those members. A new model plugs in by writing
one adapter.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch

from graftbench.config import ConfigError, Count, Positive
from graftbench.sampling.diffusion import Denoiser, Trajectory, sample_diffusion


@dataclass
class LoraSettings:
    rank: Count = 4  # r of the low-rank update B A
    alpha: Positive | None = None  # the update is scaled by alpha / r; None: alpha = r (scale 1)
    targets: list[str] = field(default_factory=lambda: ["to_q", "to_k", "to_v", "to_out.0"])
    # UNet attention projections, self- and cross-attention alike (as in SD LoRA training)


@runtime_checkable
class FinetuneModel(Protocol):
    """A model the fine-tuning loop and methods can sample, score and train.

    prediction_type: what `denoise` returns ("epsilon", "v_prediction", "flow", "logits").
    sample_shape:    shape of one state x_t, without the batch dimension.
    network:         the torch module whose parameters fine-tuning updates.
    alphas_cumprod:  (T,) the training noise schedule; its length is the number of
                     training timesteps.
    """

    prediction_type: str
    sample_shape: tuple[int, ...]
    network: torch.nn.Module
    alphas_cumprod: torch.Tensor

    def encode_condition(self, conditions: list) -> Any: ...
    def denoise(self, x: torch.Tensor, t: torch.Tensor, cond: Any) -> torch.Tensor: ...
    def denoiser(self, cond: Any, scale: float | None = None) -> Denoiser: ...
    def calls_per_step(self, scale: float | None = None) -> int: ...
    def decode(self, x: torch.Tensor) -> Any: ...
    def scheduler(self, kind: str) -> Any: ...
    def initial_state(self, n: int, generator: torch.Generator, device) -> torch.Tensor: ...
    def sample_trajectory(
        self, denoise: Denoiser, scheduler, x: torch.Tensor, **kw
    ) -> Trajectory: ...
    def trainable_parameters(self, which: str, lora: LoraSettings | None) -> list: ...
    def training_loss(self, x0, cond, generator, t_min: int = 0, anchor=None) -> torch.Tensor: ...
    def intermediate_loss(self, x_i, cond, t_i: int, generator) -> torch.Tensor: ...
    def transition_log_prob(self, scheduler, out, t, x, nxt, eta: float) -> torch.Tensor: ...
    def save(self, path, config: dict | None = None) -> None: ...


class ModelAdapter(ABC):
    """`FinetuneModel`'s defaults; subclasses give denoise, decode and scheduler."""

    prediction_type: str
    sample_shape: tuple[int, ...]
    network: torch.nn.Module

    @abstractmethod
    def denoise(self, x: torch.Tensor, t: torch.Tensor, cond: Any = None) -> torch.Tensor:
        """Network output for states x (batch, *sample_shape) at scheduler timesteps t (batch,)."""

    @abstractmethod
    def decode(self, x: torch.Tensor) -> Any:
        """Final states (batch, *sample_shape) -> what a reward scores (images, boxes, SMILES)."""

    @abstractmethod
    def scheduler(self, kind: str):
        """A fresh scheduler of `kind` ("ddpm", "ddim", "flow_euler", ...) for this model."""

    def encode_condition(self, conditions: list | None) -> Any:
        """Raw conditions (prompts, class sequences, ...) -> the `cond` of `denoise`."""
        return None

    def denoiser(self, cond: Any, scale: float | None = None) -> Denoiser:
        """The sampler callable (x, t) -> output for encoded conditions `cond`. scale: the
        classifier-free guidance weight of models that have guidance; others ignore it."""
        return lambda x, t: self.denoise(x, t, cond)

    def calls_per_step(self, scale: float | None = None) -> int:
        """Network calls per sample in one `denoiser` step (2 for a guided pair)."""
        return 1

    def initial_state(self, n: int, generator: torch.Generator, device) -> torch.Tensor:
        """x_T: (n, *sample_shape) standard Gaussian noise from `generator` on `device`."""
        return torch.randn((n, *self.sample_shape), generator=generator, device=device)

    def sample_trajectory(self, denoise: Denoiser, scheduler, x: torch.Tensor, **kw) -> Trajectory:
        """The sampler: `sampling.diffusion.sample_diffusion`'s signature and result."""
        return sample_diffusion(denoise, scheduler, x, **kw)

    def trainable_parameters(self, which: str, lora: LoraSettings | None = None) -> list:
        """Set requires_grad for a fine-tuning mode and return the trainable parameters; a
        model with one network offers only "full"."""
        if which != "full":
            raise ConfigError(f"optim.trainable: {type(self).__name__} supports only 'full'")
        return list(self.network.requires_grad_(True).parameters())

    def training_loss(self, x0, cond, generator, t_min: int = 0, anchor=None) -> torch.Tensor:
        """The loss of pre-training on data x0 (batch, *sample_shape), timesteps >= t_min."""
        raise NotImplementedError(f"{type(self).__name__} has no training loss")

    def intermediate_loss(self, x_i, cond, t_i: int, generator) -> torch.Tensor:
        """P-GRAFT's loss: x_i (batch, *sample_shape) at timestep t_i as the data."""
        raise NotImplementedError(f"{type(self).__name__} has no intermediate loss")

    def transition_log_prob(self, scheduler, out, t, x, nxt, eta: float) -> torch.Tensor:
        """log p(nxt | x) (batch,) of one sampler step from timestep t, for DDPO."""
        raise NotImplementedError(f"{type(self).__name__} has no step density")
