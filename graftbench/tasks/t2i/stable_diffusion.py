"""Stable Diffusion v2 (or any SD-family diffusers folder) behind the text-to-image adapter.

The parts come from a local diffusers folder in `save_pretrained` layout (model_index.json,
unet/, vae/, text_encoder/, tokenizer/, scheduler/), e.g. a snapshot of
stabilityai/stable-diffusion-2-1-base in the Hugging Face cache, loaded with
`local_files_only`: nothing is downloaded. What the methods call (denoise, guided,
encode_condition, decode, trainable_parameters with LoRA) is `Text2ImageAdapter`'s, so GRAFT,
P-GRAFT and DDPO run on it through the same code as on the small model. What differs: where
the parts come from, the noise schedule (the folder's scheduler config), the dtype the
networks run in (outputs come back in float32, which the samplers and losses use), and
optional gradient checkpointing. diffusers picks PyTorch's scaled-dot-product attention
itself on torch 2.

Precision: in bfloat16 or float16, fine-tune with LoRA, whose adapters peft keeps in float32;
full fine-tuning of half-precision weights with AdamW loses most small updates.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    DDPMScheduler,
    UNet2DConditionModel,
)
from transformers import CLIPTextModel, CLIPTokenizer

from graftbench import records
from graftbench.config import InputError, parse, to_dict
from graftbench.models.base import LoraSettings
from graftbench.tasks.t2i.model import KIND, Text2ImageAdapter
from graftbench.tasks.t2i.model_config import StableDiffusionConfig
from graftbench.tasks.t2i.network import Text2ImageNetwork

PARTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def check_folder(path: str | Path) -> Path:
    """The folder, or an InputError saying what is missing from it."""
    folder = Path(path)
    layout = (
        "a diffusers save_pretrained folder: model_index.json, "
        + ", ".join(f"{p}/" for p in PARTS)
        + "; e.g. the snapshot folder of stabilityai/stable-diffusion-2-1-base in the "
        "Hugging Face cache"
    )
    if not str(path) or not folder.is_dir():
        raise InputError(f"model.path: {str(path)!r} is not a folder; expected {layout}")
    missing = [p for p in ("model_index.json", *PARTS) if not (folder / p).exists()]
    if missing:
        raise InputError(f"{folder}: missing {', '.join(missing)}; expected {layout}")
    return folder


def speed_options(unet: UNet2DConditionModel, cfg: StableDiffusionConfig) -> None:
    """Apply the config's memory and speed options to the UNet, in place (its parameter names,
    hence saved checkpoints, stay those of the plain UNet)."""
    if cfg.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    if cfg.channels_last:
        unet.to(memory_format=torch.channels_last)
    if cfg.compile:
        unet.compile()


class StableDiffusionAdapter(Text2ImageAdapter):
    """An SD-family model loaded from a folder; denoise predicts what the folder's scheduler
    config says (epsilon for SD 2.1-base, v for SD 2.1 at 768 px) in scaled VAE latents."""

    def __init__(
        self,
        network: Text2ImageNetwork,
        tokenizer,
        cfg: StableDiffusionConfig,
        scheduler_config: dict,
        lora: LoraSettings | None = None,
    ):
        self.network, self.tokenizer, self.cfg, self.lora = network, tokenizer, cfg, lora
        self.scheduler_config = dict(scheduler_config)
        self.prediction_type = self.scheduler_config.get("prediction_type", "epsilon")
        self.max_length = tokenizer.model_max_length
        u = network.unet.config
        self.sample_shape = (u.in_channels, u.sample_size, u.sample_size)
        self.alphas_cumprod = self.scheduler("ddpm").alphas_cumprod

    @classmethod
    def from_pretrained(cls, cfg: StableDiffusionConfig, lora: LoraSettings | None = None):
        folder = check_folder(cfg.path)
        dtype = DTYPES[cfg.dtype]
        kw = dict(torch_dtype=dtype, local_files_only=True)
        unet = UNet2DConditionModel.from_pretrained(folder, subfolder="unet", **kw)
        vae = AutoencoderKL.from_pretrained(folder, subfolder="vae", **kw)
        text = CLIPTextModel.from_pretrained(folder, subfolder="text_encoder", **kw)
        tokenizer = CLIPTokenizer.from_pretrained(
            folder, subfolder="tokenizer", local_files_only=True
        )
        scheduler_config = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
        speed_options(unet, cfg)
        network = Text2ImageNetwork(unet, text, vae)
        network.text_encoder.requires_grad_(False)
        model = cls(network, tokenizer, cfg, scheduler_config)
        if lora is not None:
            model.trainable_parameters("lora", lora)
        return model

    def denoise(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        unet = self.network.unet
        out = unet(x.to(unet.dtype), t, encoder_hidden_states=cond.to(unet.dtype)).sample
        return out.float()

    def encode_images(self, images: torch.Tensor, generator: torch.Generator | None = None):
        vae = self.network.vae
        return super().encode_images(images.to(vae.dtype), generator).float()

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1], decoded `decode_batch` latents at a time: the VAE decoder's
        activations at 512 px take about a gigabyte per image, and a fine-tuning round
        decodes all its samples at once."""
        vae, n = self.network.vae, self.cfg.decode_batch
        parts = [
            vae.decode(z.to(vae.dtype) / vae.config.scaling_factor).sample.float()
            for z in x.split(n)
        ]
        return ((torch.cat(parts) + 1) / 2).clamp(0, 1)

    def scheduler(self, kind: str):
        """A fresh DDPM or DDIM scheduler on the folder's training schedule (its own class
        may be PNDM: the betas, offsets and parameterisation carry over)."""
        if kind == "ddpm":
            return DDPMScheduler.from_config(self.scheduler_config, variance_type="fixed_small")
        if kind == "ddim":
            return DDIMScheduler.from_config(self.scheduler_config)
        raise ValueError(f"scheduler: {kind!r} is not allowed; choose one of 'ddpm', 'ddim'")

    def save(self, path: str | Path, config: dict | None = None) -> None:
        """What fine-tuning changed, not the folder's weights: the LoRA adapters, or the UNet
        (and text encoder if trained) for full fine-tuning, with the config that loads the
        rest from the folder."""
        state = self.network.state_dict()
        if self.lora is not None:
            state = {k: v for k, v in state.items() if "lora_" in k}
        else:
            trained = {n for n, p in self.network.named_parameters() if p.requires_grad}
            keep = (
                ("unet.", "text_encoder.")
                if any(n.startswith("text_encoder.") for n in trained)
                else ("unet.",)
            )
            state = {k: v for k, v in state.items() if k.startswith(keep)}
        records.save_checkpoint(
            path,
            {"model": state, "lora": to_dict(self.lora) if self.lora else None},
            {**(config or {}), "model": to_dict(self.cfg)},
            kind=KIND,
        )

    @classmethod
    def load(
        cls, path: str | Path, device: str | torch.device = "cpu", lora: LoraSettings | None = None
    ) -> StableDiffusionAdapter:
        """A model saved by `save`: the folder's parts with the saved weights on top."""
        ckpt = records.load_checkpoint(path, KIND)
        cfg = parse(StableDiffusionConfig, ckpt["config"]["model"], "model")
        if ckpt.get("lora"):
            lora = parse(LoraSettings, ckpt["lora"], "lora")
        model = cls.from_pretrained(cfg, lora)
        missing = set(ckpt["model"]) - set(model.network.state_dict())
        if missing:
            raise ValueError(
                f"{path}: {len(missing)} saved tensors fit no part of the model, "
                f"e.g. {sorted(missing)[0]}"
            )
        model.network.load_state_dict(ckpt["model"], strict=False)
        model.network.to(device).eval()
        return model
