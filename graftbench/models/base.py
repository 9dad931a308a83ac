"""The model-adapter interface shared by the small pixel models and Stable Diffusion v2.

Methods (GRAFT, P-GRAFT, DDPO, INC) talk to a model only through this interface, so a new
model plugs in by writing one adapter.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Literal

import torch


class ModelAdapter(ABC):
    """A trainable denoiser plus what it needs around it.

    prediction_type: what `denoise` returns: "epsilon", "v_prediction" or "flow" (velocity
                     noise - data, diffusers' flow-matching convention).
    sample_shape:    shape of one state x_t, without the batch dimension.
    network:         the torch module whose parameters fine-tuning updates.
    """

    prediction_type: Literal["epsilon", "v_prediction", "flow"]
    sample_shape: tuple[int, ...]
    network: torch.nn.Module

    @abstractmethod
    def denoise(self, x: torch.Tensor, t: torch.Tensor, cond: Any = None) -> torch.Tensor:
        """Network output for states x (batch, *sample_shape) at scheduler timesteps t (batch,)."""

    def encode_condition(self, conditions: list[dict] | None) -> Any:
        """Turn raw conditions (one dict per sample, e.g. {"prompt": ...}) into `cond`."""
        return None

    @abstractmethod
    def decode(self, x: torch.Tensor) -> torch.Tensor:
        """Map final states (batch, *sample_shape) to images (batch, C, H, W) in [0, 1]."""

    @abstractmethod
    def scheduler(self, kind: str):
        """A fresh diffusers scheduler of `kind` ("ddpm", "ddim", "flow_euler") for this model."""
