"""Model size configs (import-light: no diffusers here)."""

from __future__ import annotations

from dataclasses import dataclass, field

from graftbench.config import Count, Counts, Natural


@dataclass
class UNetConfig:
    """Size of the UNet2DModel; every field maps onto diffusers' argument of the same name."""

    sample_size: Count = 28  # image side in pixels (must be divisible by 2**(levels - 1))
    in_channels: Count = 1  # 1 for grey digits, 3 for RGB folders
    block_out_channels: Counts = field(default_factory=lambda: [32, 64, 64])  # per level
    layers_per_block: Count = 1  # ResNet blocks per level
    attention_levels: list[Natural] = field(default_factory=lambda: [2])  # levels with self-attn
    norm_num_groups: Count = 8  # GroupNorm groups (must divide every channel count)
