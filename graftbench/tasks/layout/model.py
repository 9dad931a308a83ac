"""The layout base model: continuous DDPM over element boxes, conditioned on element classes.

The class-conditional layout task of the layout-diffusion literature (e.g. LayoutDM, Inoue et
al. 2023; LayoutDiffusion, Zhang et al. 2023, which diffuse box coordinates with a
transformer): given the classes of a page's elements in reading order, generate their boxes.
A state is (max_elements, 4) boxes (x_centre, y_centre, width, height) scaled from the page's
[0, 1] to [-1, 1]; a layout with fewer elements pads its class sequence with PAD, whose boxes
are 0 in the data, so the one denoising loss of pre-training and GRAFT (`losses`) needs no
mask: the network learns PAD positions in a step (their data is a constant given the class).

The denoiser is a small pre-norm transformer encoder (torch's) over the elements, each token
the sum of a box projection, a class embedding, a reading-order position embedding and the
timestep embedding (diffusers' sinusoidal `Timesteps` + `TimestepEmbedding`, as its UNets).
The schedulers are diffusers' DDPM/DDIM on the training schedule. diffusers is imported
inside the functions that need it (8 s), so the config imports light.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from graftbench import records
from graftbench.config import ConfigError, Count, Count2, Positive, parse, to_dict
from graftbench.models.diffusion import DiffusionAdapter, ddpm_scheduler
from graftbench.tasks.layout.data import CLASSES, PAD

KIND = "layout model"  # the checkpoint kind (records.save_checkpoint) of this task's models


@dataclass
class LayoutModelConfig:
    max_elements: Count = 10  # L: elements per state (layouts with fewer are padded)
    width: Count = 128  # transformer width d
    layers: Count = 4  # transformer encoder layers
    heads: Count = 4  # attention heads (must divide width)
    num_train_timesteps: Count2 = 1000  # T of the DDPM schedule
    beta_schedule: Literal["linear", "scaled_linear", "squaredcos_cap_v2"] = "squaredcos_cap_v2"
    # the noise schedule (diffusers' names; squaredcos_cap_v2 is the cosine schedule)
    prediction_type: Literal["epsilon", "v_prediction"] = "epsilon"  # what denoise predicts
    timestep_spacing: Literal["leading", "trailing", "linspace"] = "trailing"  # DDIM grid
    min_snr_gamma: Positive | None = None  # Min-SNR loss weighting (losses.weighted_mean)

    def __post_init__(self):
        if self.width % self.heads:
            raise ConfigError(f"layout.model.heads: {self.heads} must divide width {self.width}")


class LayoutDenoiser(nn.Module):
    """(x (batch, L, 4), t (batch,), classes (batch, L)) -> (batch, L, 4)."""

    def __init__(self, cfg: LayoutModelConfig):
        super().__init__()
        from diffusers.models.embeddings import TimestepEmbedding, Timesteps

        d = cfg.width
        self.box = nn.Linear(4, d)
        self.cls = nn.Embedding(PAD + 1, d)
        self.pos = nn.Parameter(torch.randn(cfg.max_elements, d) * 0.02)
        self.time_proj = Timesteps(d, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_emb = TimestepEmbedding(d, d)
        layer = nn.TransformerEncoderLayer(
            d, cfg.heads, 4 * d, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False)
        self.out = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, 4))
        nn.init.zeros_(self.out[1].weight)  # start as "predict 0", a stable first step
        nn.init.zeros_(self.out[1].bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        temb = self.time_emb(self.time_proj(t).to(x.dtype))
        h = self.box(x) + self.cls(classes) + self.pos[: x.shape[1]] + temb[:, None]
        return self.out(self.encoder(h))


class LayoutAdapter(DiffusionAdapter):
    """The `ModelAdapter` of the layout model: conditions are class-name tuples (one layout's
    classes in reading order, `layout.data.condition`); `decode` gives boxes in page units."""

    def __init__(self, cfg: LayoutModelConfig):
        self.cfg, self.network = cfg, LayoutDenoiser(cfg)
        self.prediction_type = cfg.prediction_type
        self.sample_shape = (cfg.max_elements, 4)
        self.alphas_cumprod = self.scheduler("ddpm").alphas_cumprod  # (T,) alpha_bar_t

    @property
    def min_snr_gamma(self) -> float | None:
        return self.cfg.min_snr_gamma

    @property
    def device(self) -> torch.device:
        return self.network.pos.device

    def encode_condition(self, conditions) -> torch.Tensor:
        """Class-name sequences -> class ids (batch, L), PAD after each layout's elements."""
        if conditions is None:
            raise ValueError("encode_condition: the layout model needs each layout's classes")
        ids = torch.full((len(conditions), self.cfg.max_elements), PAD, dtype=torch.long)
        for i, names in enumerate(conditions):
            if not 1 <= len(names) <= self.cfg.max_elements:
                raise ValueError(
                    f"condition {i}: {len(names)} elements; the model takes "
                    f"1..{self.cfg.max_elements}"
                )
            ids[i, : len(names)] = torch.tensor([CLASSES.index(n) for n in names])
        return ids.to(self.device)

    def denoise(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """x (batch, L, 4), t (batch,) integer timesteps, cond (batch, L) -> eps or v."""
        return self.network(x, t, cond)

    @staticmethod
    def encode_boxes(boxes: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Page-unit boxes (batch, L, 4) in [0, 1] and mask (batch, L) -> model space (batch,
        L, 4): [-1, 1], PAD positions 0."""
        return (boxes * 2 - 1) * mask[..., None]

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        """Model-space states (batch, L, 4) -> boxes in page units, clamped to [0, 1] (PAD
        positions too: the reward masks them by the condition's length)."""
        return ((x + 1) / 2).clamp(0, 1)

    def scheduler(self, kind: str):
        """A fresh DDPM or DDIM scheduler on the training schedule; clip_sample keeps the
        predicted x_0 in [-1, 1], where every box lies."""
        c = self.cfg
        return ddpm_scheduler(
            kind,
            num_train_timesteps=c.num_train_timesteps,
            beta_schedule=c.beta_schedule,
            prediction_type=c.prediction_type,
            timestep_spacing=c.timestep_spacing,
            clip_sample=True,
        )

    def save(self, path: str | Path, config: dict | None = None) -> None:
        """One checkpoint (`records.save_checkpoint`); config["model"] is this model's config."""
        state = {"model": self.network.state_dict()}
        config = {**(config or {}), "model": to_dict(self.cfg)}
        records.save_checkpoint(path, state, config, kind=KIND)

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> LayoutAdapter:
        """A model saved by `save` or trained by `train.fit` (EMA weights + run config)."""
        ckpt = records.load_checkpoint(path, KIND)
        model = cls(parse(LayoutModelConfig, ckpt["config"]["model"], "model"))
        model.network.load_state_dict(ckpt["model"])
        model.network.to(device).eval()
        return model
