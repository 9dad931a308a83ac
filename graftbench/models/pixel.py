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

    def __init__(
        self,
        network: UNet2DModel,
        *,
        cpu_channels_last: bool = False,
        cpu_chunk_bytes: int | None = 4 * 2**20,
    ):
        """cpu_chunk_bytes: on CPU, `velocity` splits a batch into equal micro-batches whose
            first-level feature map (block_out_channels[0] x H x W) fits in this many bytes, so
            every activation stays in the last-level cache and under glibc's 32 MiB mmap
            threshold: a larger tensor is mapped and zeroed afresh on each call (309,000 page
            faults per call on a 28x28 UNet at batch 250; none in chunks). None: one call per
            batch. Measured: 1.4x per call on that model, neutral on the 16x16 cpu preset at
            batch 500, whose activations already fit (BENCHMARKS.md).
        cpu_channels_last: on CPU, `velocity` runs the network in channels_last (NHWC); see
            `_prepare_cpu`. Off by default: +0-12% on top of chunks on an AMD EPYC with torch
            2.14, but half the speed on a Xeon with torch 2.11 (BENCHMARKS.md).
        Both only change speed (outputs agree to float rounding) and leave other devices alone.
        """
        self.network = network
        c, s = network.config.in_channels, network.config.sample_size
        self.sample_shape = (c, s, s)
        self.cpu_channels_last = cpu_channels_last
        self.cpu_chunk_bytes = cpu_chunk_bytes

    @classmethod
    def from_config(cls, cfg: UNetConfig, **speed) -> PixelFlowAdapter:
        """`speed`: the keyword options of `__init__`."""
        return cls(build_unet(cfg), **speed)

    def denoise(self, x: torch.Tensor, t: torch.Tensor, cond: Any = None) -> torch.Tensor:
        return self.network(x, t).sample

    def velocity(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """The velocity field of graftbench.sampling.flow: x (batch, *sample_shape), sigma
        (batch,) in [0, 1] -> (batch, *sample_shape), in the memory layout of x."""
        t = (sigma * self.num_train_timesteps).expand(len(x))
        if not x.is_cpu:
            return self.network(x, t).sample
        self._prepare_cpu()
        n_chunks = 1
        if self.cpu_chunk_bytes is not None:
            level0 = self.network.config.block_out_channels[0] * x.shape[-2] * x.shape[-1]
            per_chunk = max(1, self.cpu_chunk_bytes // (level0 * x.element_size()))
            n_chunks = max(1, -(-len(x) // per_chunk))
        # equal-sized chunks: a tail of a few samples would pay a whole call's fixed overhead
        out = [
            self.network(xc, tc).sample
            for xc, tc in zip(x.tensor_split(n_chunks), t.tensor_split(n_chunks), strict=True)
        ]
        out = out[0] if n_chunks == 1 else torch.cat(out)
        return out.contiguous() if x.is_contiguous() else out

    def _prepare_cpu(self) -> None:
        """With cpu_channels_last, put the conv weights in channels_last once (values
        unchanged; the layout then stays, for `denoise` too). Converting the weights, not the
        input, is what keeps the whole UNet in NHWC: a convolution follows its weight's
        layout, whereas a 1-channel input is contiguous in both layouts, and diffusers'
        Upsample2D makes batches of 64 or more NCHW-contiguous again."""
        w = self.network.conv_out.weight  # (out, C0 > 1, 3, 3): its layout is unambiguous
        if self.cpu_channels_last and not w.is_contiguous(memory_format=torch.channels_last):
            self.network.to(memory_format=torch.channels_last)

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        return ((x + 1) / 2).clamp(0, 1)

    def scheduler(self, kind: str):
        if kind != "flow_euler":
            raise ValueError(
                f"scheduler: {kind!r} is not allowed for a flow model; use 'flow_euler'"
            )
        return FlowMatchEulerDiscreteScheduler(num_train_timesteps=self.num_train_timesteps)
