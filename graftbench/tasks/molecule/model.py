"""The molecule base model: absorbing-state (masked) discrete diffusion over SMILES tokens.

A state is (length,) token ids (`tokens.Vocabulary`: PAD = 0, MASK = 1, then SMILES
tokens); x_T is all MASK and the sampler (`masked.sample_masked`) unmasks positions until
none is left. The denoiser is a small pre-norm transformer encoder (torch's) over the
positions, each input the sum of a token embedding, a learned position embedding and the
timestep embedding (diffusers' sinusoidal `Timesteps` + `TimestepEmbedding`, as
`tasks/layout/model.py`), with a linear head to logits over the vocabulary. The output follows
MDLM's SUBS parameterisation (Sahoo et al. 2024, sec. 3.2): the MASK logit is -inf (the
model never predicts MASK) and at unmasked input positions all mass sits on the input token
(carry-over), so sampling never changes an unmasked token and the loss there is 0.

Generation is unconditional: conditions are a placeholder (e.g. "qm9") and
`encode_condition` returns None. diffusers is imported inside the network's constructor
(8 s), so the config imports light.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from graftbench import records
from graftbench.config import ConfigError, Count, Count2, Natural, Share, parse, to_dict
from graftbench.models.base import ModelAdapter
from graftbench.tasks.molecule import masked
from graftbench.tasks.molecule.tokens import MASK, Vocabulary

KIND = "molecule model"  # the checkpoint kind (records.save_checkpoint) of this task's models


@dataclass
class MoleculeModelConfig:
    vocab_size: Natural = 0  # V: ids including PAD and MASK; 0 = len(vocabulary), filled in
    # when the adapter is built (a checkpoint stores the actual value)
    length: Count = 40  # L: tokens per state (SMILES with more tokens cannot be encoded)
    width: Count = 128  # transformer width d
    layers: Count = 4  # transformer encoder layers
    heads: Count = 4  # attention heads (must divide width)
    dropout: Share = 0.0  # dropout inside the encoder layers
    num_train_timesteps: Count2 = 1000  # T of the masking schedule
    schedule: Literal["linear", "cosine"] = "linear"  # alpha_t (masked.MaskedScheduler)
    representation: Literal["smiles", "selfies"] = "selfies"  # the tokens (molecule.tokens):
    # SELFIES symbols, every sequence of which is a molecule, or SMILES tokens

    def __post_init__(self):
        if self.vocab_size != 0 and self.vocab_size < 3:
            raise ConfigError(
                f"molecule.model.vocab_size: {self.vocab_size} must be 0 (from "
                "the vocabulary) or at least 3 (PAD, MASK, one token)"
            )
        if self.width % self.heads:
            raise ConfigError(f"molecule.model.heads: {self.heads} must divide width {self.width}")
        if self.schedule not in ("linear", "cosine"):
            raise ConfigError(
                f"molecule.model.schedule: {self.schedule!r}; allowed values are 'linear', 'cosine'"
            )


class MoleculeDenoiser(nn.Module):
    """(x (batch, L) long, t (batch,) timesteps) -> SUBS logits (batch, L, V) float."""

    def __init__(self, cfg: MoleculeModelConfig):
        super().__init__()
        from diffusers.models.embeddings import TimestepEmbedding, Timesteps

        d, self.vocab_size = cfg.width, cfg.vocab_size
        self.tok = nn.Embedding(cfg.vocab_size, d)
        self.pos = nn.Parameter(torch.randn(cfg.length, d) * 0.02)
        self.time_proj = Timesteps(d, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_emb = TimestepEmbedding(d, d)
        layer = nn.TransformerEncoderLayer(
            d,
            cfg.heads,
            4 * d,
            dropout=cfg.dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False)
        self.out = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, cfg.vocab_size))
        nn.init.zeros_(self.out[1].weight)  # start uniform over tokens, a stable first step
        nn.init.zeros_(self.out[1].bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        temb = self.time_emb(self.time_proj(t).to(self.pos.dtype))
        # PAD is attended to like any token: where the molecule ends is part of the state
        h = self.tok(x) + self.pos[: x.shape[1]] + temb[:, None]
        logits = self.out(self.encoder(h)).float()
        mask_col = torch.tensor([MASK], device=x.device)
        logits = logits.index_fill(-1, mask_col, float("-inf"))  # SUBS: never predict MASK
        carried = torch.full_like(logits, float("-inf")).scatter(-1, x[..., None], 0.0)
        return torch.where((x != MASK)[..., None], carried, logits)  # SUBS carry-over


class MoleculeAdapter(ModelAdapter):
    """The `ModelAdapter` of the molecule model. Differences from the Gaussian adapters:
    states are token ids, `denoise` returns logits (prediction_type "logits"), `decode`
    returns SMILES strings, x_T is all MASK (`initial_state`), the sampler is
    `masked.sample_masked` (`sample_trajectory`), the losses are `training_loss` /
    `intermediate_loss` (cross-entropy, not squared error) and a step's density is the
    unmasking's (`transition_log_prob`)."""

    prediction_type = "logits"  # a distribution over tokens

    def __init__(self, cfg: MoleculeModelConfig, vocab: Vocabulary):
        if cfg.vocab_size == 0:
            cfg = dataclasses.replace(cfg, vocab_size=len(vocab))
        if vocab.representation != cfg.representation:
            raise ConfigError(
                f"molecule.model.representation: {cfg.representation!r}, but the "
                f"vocabulary is of {vocab.representation!r} tokens"
            )
        if cfg.vocab_size != len(vocab):
            raise ConfigError(
                f"molecule.model.vocab_size: {cfg.vocab_size}, but the "
                f"vocabulary has {len(vocab)} ids"
            )
        self.cfg, self.vocab = cfg, vocab
        self.network = MoleculeDenoiser(cfg)
        self.sample_shape = (cfg.length,)
        self.scheduler_obj = self.scheduler("masked")

    @property
    def device(self) -> torch.device:
        return self.network.pos.device

    @property
    def alphas_cumprod(self) -> torch.Tensor:
        """(T,) float32: probability a token is unmasked at t (generic code takes its len)."""
        return self.scheduler_obj.alphas_cumprod.float()

    def denoise(self, x: torch.Tensor, t: torch.Tensor, cond=None) -> torch.Tensor:
        """x (batch, L) long, t (batch,) timesteps -> logits (batch, L, V); cond is unused."""
        return self.network(x, t)

    def encode_condition(self, conditions) -> None:
        """Unconditional generation: the conditions (e.g. "qm9") only name the task."""
        return None

    def decode(self, x: torch.Tensor) -> list[str]:
        """Final states (batch, L) -> SMILES strings (`Vocabulary.decode`: a state with a
        MASK left or a token after PAD gives an invalid string, never an error)."""
        return self.vocab.decode(x)

    def scheduler(self, kind: str) -> masked.MaskedScheduler:
        """A fresh MaskedScheduler on the training schedule for kind "masked", "ddim" or
        "ddpm": absorbing diffusion has one ancestral sampler, so the Gaussian kinds that
        configs name all map to it."""
        if kind not in ("masked", "ddim", "ddpm"):
            raise ValueError(
                f"scheduler: {kind!r} is not allowed; choose one of 'masked', 'ddim', 'ddpm'"
            )
        return masked.MaskedScheduler(self.cfg.num_train_timesteps, self.cfg.schedule, MASK)

    def initial_state(
        self,
        n: int,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        """x_T: (n, L) long, all MASK. Deterministic: draws nothing from `generator`."""
        return torch.full((n, self.cfg.length), MASK, dtype=torch.long, device=device)

    def sample_trajectory(self, denoise, scheduler, x: torch.Tensor, **kw):
        """`masked.sample_masked` (`sample_diffusion`'s signature and result)."""
        return masked.sample_masked(denoise, scheduler, x, **kw)

    def training_loss(
        self, x0: torch.Tensor, cond, generator: torch.Generator, t_min: int = 0, anchor=None
    ) -> torch.Tensor:
        """`masked.training_loss` on token ids x0 (batch, L); no anchor (GRAFT's anchor is a
        denoising-loss penalty, refused for this model when the method is built)."""
        if anchor is not None:
            raise ConfigError("anchor: the masked molecule model's loss has no anchor")
        return masked.training_loss(self, x0, cond, generator, t_min)

    def intermediate_loss(
        self, x_i: torch.Tensor, cond, t_i: int, generator: torch.Generator
    ) -> torch.Tensor:
        """`masked.intermediate_loss` on intermediate states x_i (batch, L) at timestep t_i."""
        return masked.intermediate_loss(self, x_i, cond, t_i, generator)

    def transition_log_prob(self, scheduler, out, t, x, nxt, eta: float) -> torch.Tensor:
        """The unmasking step's exact log-probability (`masked.MaskedScheduler.log_prob`)."""
        return scheduler.log_prob(out, t, x, nxt)

    def save(self, path: str | Path, config: dict | None = None) -> None:
        """One checkpoint (`records.save_checkpoint`): weights and vocabulary as state,
        config["model"] set to this model's config."""
        state = {"model": self.network.state_dict(), "vocab": self.vocab.to_dict()}
        config = {**(config or {}), "model": to_dict(self.cfg)}
        records.save_checkpoint(path, state, config, kind=KIND)

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> MoleculeAdapter:
        """A model saved by `save`, or by `train.fit` with the vocabulary's `to_dict()` under
        the run config's "vocab" key (train.fit stores weights and config only)."""
        ckpt = records.load_checkpoint(path, KIND)
        vocab = ckpt.get("vocab") or ckpt["config"].get("vocab")
        if vocab is None:
            raise ValueError(f"{path}: no vocabulary (neither a 'vocab' entry nor config.vocab)")
        model = cls(
            parse(MoleculeModelConfig, ckpt["config"]["model"], "model"),
            Vocabulary.from_dict(vocab),
        )
        model.network.load_state_dict(ckpt["model"])
        model.network.to(device).eval()
        return model
