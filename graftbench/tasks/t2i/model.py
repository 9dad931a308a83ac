"""A small Stable-Diffusion-family text-to-image model, built offline from configs.

The parts and their roles follow SD v2 (Rombach et al. 2022): a diffusers
UNet2DConditionModel cross-attends to the last hidden states of a transformers CLIPTextModel;
the tokenizer is a CLIPTokenizer over the task grammar's vocabulary
(`graftbench.tasks.t2i.tokenizer`); classifier-free guidance (Ho & Salimans 2022) uses the empty
prompt as the unconditional input. The small task's images are 32 x 32 RGB, so by default the
UNet runs in pixel space on images scaled to [-1, 1]; `vae` switches to SD's latent space
through an AutoencoderKL built from config (its weights must come from a checkpoint: a random
VAE decodes to noise, and no VAE pre-training exists in the suite yet). The networks are built
in `network`; the configs live in `model_config`, which imports neither diffusers nor
transformers.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

import torch
from transformers import CLIPTokenizer

from graftbench import records
from graftbench.config import parse, to_dict
from graftbench.models.base import LoraSettings
from graftbench.models.diffusion import DiffusionAdapter, ddpm_scheduler
from graftbench.tasks.t2i.model_config import Text2ImageConfig
from graftbench.tasks.t2i.network import Text2ImageNetwork, build_network
from graftbench.tasks.t2i.tokenizer import write_clip_tokenizer

TOKENIZER_FILES = ("vocab.json", "merges.txt", "tokenizer_config.json")
KIND = "t2i model"  # the checkpoint kind (records.save_checkpoint) of every t2i model, SD too


class Text2ImageAdapter(DiffusionAdapter):
    """DDPM-family text-to-image model: `denoise` predicts epsilon or v for states in model
    space (pixels in [-1, 1], or scaled VAE latents) at integer timesteps in [0, T)."""

    def __init__(
        self,
        network: Text2ImageNetwork,
        tokenizer,
        cfg: Text2ImageConfig,
        tokenizer_files: dict[str, str],
        lora: LoraSettings | None = None,
    ):
        """tokenizer_files: the tokenizer folder's files (name -> text), saved with the model."""
        self.network, self.tokenizer, self.cfg = network, tokenizer, cfg
        self.tokenizer_files, self.lora = tokenizer_files, lora
        self.prediction_type = cfg.prediction_type
        self.max_length = cfg.max_length  # tokens per prompt, padding included
        u = network.unet.config
        self.sample_shape = (u.in_channels, u.sample_size, u.sample_size)
        # (num_train_timesteps,) alpha_bar_t of the forward process, shared by both schedulers
        self.alphas_cumprod = self.scheduler("ddpm").alphas_cumprod

    @classmethod
    def from_config(cls, cfg: Text2ImageConfig, tokenizer_dir: str | Path | None = None):
        """Random-initialised model. tokenizer_dir: a CLIP tokenizer folder; None writes the
        grammar's tokenizer (`t2i.tokenizer.write_clip_tokenizer`) with cfg.max_length."""
        if tokenizer_dir is None:
            return cls._build(cfg, None)
        return cls._build(cfg, {f: (Path(tokenizer_dir) / f).read_text() for f in TOKENIZER_FILES})

    @classmethod
    def _build(cls, cfg, files, lora=None):
        with tempfile.TemporaryDirectory() as tmp:
            if files is None:
                write_clip_tokenizer(tmp, model_max_length=cfg.max_length)
                files = {f: (Path(tmp) / f).read_text() for f in TOKENIZER_FILES}
            for name, text in files.items():
                (Path(tmp) / name).write_text(text)
            tokenizer = CLIPTokenizer.from_pretrained(tmp)
        model = cls(build_network(cfg, tokenizer), tokenizer, cfg, files)
        if lora is not None:
            model.trainable_parameters("lora", lora)
        return model

    @property
    def min_snr_gamma(self) -> float | None:
        return self.cfg.min_snr_gamma

    @property
    def device(self) -> torch.device:
        return self.network.unet.device

    def tokenize(self, prompts: Sequence[str]) -> torch.Tensor:
        """Token ids (batch, max_length): start, words, end, then end tokens as padding (CLIP's
        convention; no attention mask, as in SD, so padding positions carry the prompt too)."""
        ids = self.tokenizer(
            list(prompts),
            padding="max_length",
            max_length=self.max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids
        return ids.to(self.device)

    def encode_condition(self, conditions: Sequence[str | dict]) -> torch.Tensor:
        """Prompt embeddings (batch, max_length, text_hidden_size): the text encoder's last
        hidden states. conditions: prompts, or the interface's dicts {"prompt": ...}."""
        if conditions is None:
            raise ValueError("encode_condition: a text-to-image model needs prompts ('' for none)")
        prompts = [c["prompt"] if isinstance(c, dict) else c for c in conditions]
        return self.network.text_encoder(self.tokenize(prompts)).last_hidden_state

    def unconditional(self, batch: int) -> torch.Tensor:
        """The empty prompt's embedding, (batch, max_length, text_hidden_size)."""
        return self.encode_condition([""]).expand(batch, -1, -1)

    def denoise(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """x (batch, *sample_shape), t (batch,) integer timesteps, cond (batch, seq, dim) ->
        epsilon or v (batch, *sample_shape)."""
        return self.network.unet(x, t, encoder_hidden_states=cond).sample

    def denoiser(self, cond: torch.Tensor, scale: float | None = None):
        """The sampler callable: classifier-free guided (`guided`)."""
        return self.guided(cond, scale)

    def calls_per_step(self, scale: float | None = None) -> int:
        """2 for a guided step (a conditional and an unconditional call), 1 at weight 1."""
        return 1 if (self.cfg.guidance_scale if scale is None else scale) == 1.0 else 2

    def guided(
        self, cond: torch.Tensor, scale: float | None = None, uncond: torch.Tensor | None = None
    ) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        """The `denoise` callable of `sampling.diffusion.sample_diffusion` for prompts `cond`
        (batch, seq, dim): classifier-free guidance out = u + w (c - u) (Ho & Salimans 2022,
        eq. 6, whose 1 + w is our w), applied to epsilon or v alike: both are affine in the
        score at fixed x_t, and the weights (1 - w, w) sum to one.
        scale: w, default cfg.guidance_scale; w = 1 skips the unconditional call.
        uncond: (batch, seq, dim), default the empty prompt's embedding, encoded once here."""
        w = self.cfg.guidance_scale if scale is None else scale
        if w == 1.0:
            return lambda x, t: self.denoise(x, t, cond)
        u = self.unconditional(len(cond)) if uncond is None else uncond

        def model(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            # one batch of 2B rather than two calls of B: the fixed cost per call dominates
            # a small UNet
            out = self.denoise(torch.cat([x, x]), torch.cat([t, t]), torch.cat([u, cond]))
            out_u, out_c = out.chunk(2)
            return out_u + w * (out_c - out_u)

        return model

    def encode_images(self, images: torch.Tensor, generator: torch.Generator | None = None):
        """Images (batch, C, H, W) in [0, 1] -> model-space states (batch, *sample_shape).
        Latents are drawn from the VAE posterior with `generator`, or its mean when None."""
        x = images.to(self.device) * 2 - 1
        if self.network.vae is None:
            return x
        dist = self.network.vae.encode(x).latent_dist
        z = dist.mode() if generator is None else dist.sample(generator)
        return z * self.network.vae.config.scaling_factor

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        """Model-space states (batch, *sample_shape) -> images (batch, C, H, W) in [0, 1]."""
        if (vae := self.network.vae) is not None:
            x = vae.decode(x / vae.config.scaling_factor).sample
        return ((x + 1) / 2).clamp(0, 1)

    def scheduler(self, kind: str):
        """A fresh DDPM or DDIM scheduler on the training schedule. clip_sample keeps the
        predicted x_0 in [-1, 1], where pixel-space data lies (not latents); DDIM's last step
        lands on alpha_bar = 1, i.e. a clean image."""
        c = self.cfg
        return ddpm_scheduler(
            kind,
            num_train_timesteps=c.num_train_timesteps,
            beta_schedule=c.beta_schedule,
            beta_start=c.beta_start,
            beta_end=c.beta_end,
            prediction_type=c.prediction_type,
            timestep_spacing=c.timestep_spacing,
            clip_sample=c.vae is None,
        )

    def trainable_parameters(
        self, which: Literal["full", "unet", "lora"], lora: LoraSettings | None = None
    ) -> list[torch.nn.Parameter]:
        """Set requires_grad for a fine-tuning mode and return the trainable parameters.

        full: UNet and text encoder (pre-training: the text encoder starts random, so it must
        learn jointly). unet: the text encoder frozen, as DDPO and SD fine-tuning do. lora:
        only LoRA adapters (peft, added to the UNet on first use with `lora` settings, B = 0
        so outputs start identical to the base). The VAE is never trained.
        """
        net = self.network
        net.requires_grad_(False)
        if which == "lora":
            if self.lora is None:
                from peft import LoraConfig

                self.lora = lora or LoraSettings()
                net.unet.add_adapter(
                    LoraConfig(
                        r=self.lora.rank,
                        lora_alpha=self.lora.alpha or self.lora.rank,
                        target_modules=list(self.lora.targets),
                        init_lora_weights=True,
                    )
                )
            elif lora is not None and lora != self.lora:
                raise ValueError(f"trainable_parameters: LoRA {self.lora} is already added")
            for name, p in net.unet.named_parameters():
                p.requires_grad_("lora_" in name)
        elif which in ("full", "unet"):
            net.unet.requires_grad_(True)
            net.text_encoder.requires_grad_(which == "full")
        else:
            raise ValueError(f"trainable_parameters: {which!r}; choose 'full', 'unet' or 'lora'")
        return [p for p in net.parameters() if p.requires_grad]

    def save(self, path: str | Path, config: dict | None = None) -> None:
        """One checkpoint file (`records.save_checkpoint`): network state (with LoRA weights if
        added), tokenizer files and LoRA settings; config["model"] is set to this model's
        config, beside whatever run config is passed."""
        state = {
            "model": self.network.state_dict(),
            "tokenizer": self.tokenizer_files,
            "lora": to_dict(self.lora) if self.lora else None,
        }
        config = {**(config or {}), "model": to_dict(self.cfg)}
        records.save_checkpoint(path, state, config, kind=KIND)

    @classmethod
    def load(
        cls, path: str | Path, device: str | torch.device = "cpu", lora: LoraSettings | None = None
    ) -> Text2ImageAdapter:
        """A model saved by `save`, or trained by `train.fit` (whose checkpoint holds the EMA
        weights and the run config with a "model" key, but no tokenizer files: the grammar's
        tokenizer is regenerated, which `write_clip_tokenizer` makes deterministic, and no LoRA
        settings: pass `lora` for a LoRA run's checkpoint)."""
        ckpt = records.load_checkpoint(path, KIND)
        cfg = parse(Text2ImageConfig, ckpt["config"]["model"], "model")
        if ckpt.get("lora"):
            lora = parse(LoraSettings, ckpt["lora"], "lora")
        if lora is None and any(".lora_A." in k for k in ckpt["model"]):
            raise ValueError(f"{path}: holds LoRA weights but no LoRA settings; pass `lora`")
        model = cls._build(cfg, ckpt.get("tokenizer"), lora)
        model.network.load_state_dict(ckpt["model"])
        model.network.to(device).eval()
        return model
