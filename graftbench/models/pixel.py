"""A pixel-space rectified-flow model on diffusers' UNet2DModel (the unconditional task)."""

from __future__ import annotations

from typing import Any

import torch
from diffusers import FlowMatchEulerDiscreteScheduler, UNet2DModel

from graftbench.models.base import ModelAdapter
from graftbench.models.config import UNetConfig


def build_unet(cfg: UNetConfig) -> UNet2DModel:
    levels = len(cfg.block_out_channels)
    down = [
        "AttnDownBlock2D" if i in cfg.attention_levels else "DownBlock2D" for i in range(levels)
    ]
    up = ["AttnUpBlock2D" if i in cfg.attention_levels else "UpBlock2D" for i in range(levels)]
    return UNet2DModel(
        sample_size=cfg.sample_size,
        in_channels=cfg.in_channels,
        out_channels=cfg.in_channels,
        block_out_channels=tuple(cfg.block_out_channels),
        layers_per_block=cfg.layers_per_block,
        down_block_types=tuple(down),
        up_block_types=tuple(reversed(up)),
        norm_num_groups=cfg.norm_num_groups,
        attention_head_dim=8,
    )


class PixelFlowAdapter(ModelAdapter):
    """Rectified flow in pixel space: images scaled to [-1, 1], UNet predicts v = noise - data.

    Timesteps follow diffusers' flow convention t = 1000 * sigma, so the same network runs under
    FlowMatchEulerDiscreteScheduler and under graftbench.sampling.solve_flow (via `velocity`).
    """

    prediction_type = "flow"
    num_train_timesteps = 1000

    def __init__(self, network: UNet2DModel):
        self.network = network
        c, s = network.config.in_channels, network.config.sample_size
        self.sample_shape = (c, s, s)

    @classmethod
    def from_config(cls, cfg: UNetConfig) -> PixelFlowAdapter:
        return cls(build_unet(cfg))

    def denoise(self, x: torch.Tensor, t: torch.Tensor, cond: Any = None) -> torch.Tensor:
        return self.network(x, t).sample

    def velocity(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """The velocity field of graftbench.sampling.flow, sigma in [0, 1]."""
        return self.network(x, sigma * self.num_train_timesteps).sample

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        return ((x + 1) / 2).clamp(0, 1)

    def scheduler(self, kind: str):
        if kind != "flow_euler":
            raise ValueError(
                f"scheduler: {kind!r} is not allowed for a flow model; use 'flow_euler'"
            )
        return FlowMatchEulerDiscreteScheduler(num_train_timesteps=self.num_train_timesteps)
