"""Configs of the small text-to-image model (import-light: no diffusers or transformers, so
the workflow can parse and validate them without the seconds those imports take)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from graftbench.config import ConfigError, Count, Count2, Counts, Guidance, Natural, Positive, Share


@dataclass
class VAEConfig:
    """An SD-style AutoencoderKL; fields map onto diffusers' arguments of the same name."""

    block_out_channels: Counts = field(default_factory=lambda: [32, 64])  # per level; the
    # latent side is the image side / 2**(levels - 1)
    layers_per_block: Count = 1  # ResNet blocks per level
    latent_channels: Count = 4  # channels of the latent the UNet denoises
    norm_num_groups: Count = 8  # GroupNorm groups (must divide every channel count)
    scaling_factor: Positive = 0.18215  # latents are multiplied by it for ~unit variance (SD v1's
    # value; re-measure as 1 / std of the latents for a newly trained VAE)


@dataclass
class Text2ImageConfig:
    sample_size: Count = 32  # image side in pixels (must be divisible by 2**(levels - 1))
    in_channels: Count = 3  # image channels (RGB)
    block_out_channels: Counts = field(default_factory=lambda: [16, 32, 64])  # per level
    layers_per_block: Count = 1  # ResNet blocks per level
    cross_attention_levels: list[Natural] = field(default_factory=lambda: [2])  # levels whose
    # blocks self- and cross-attend (the mid block always does). Attention at 16 x 16 (256
    # positions) doubles a CPU training step of the default UNet; at 8 x 8 it is cheap and
    # still sees the whole image, which spatial relations need
    attention_heads: Count = 4  # heads per attention layer (must divide every attending width)
    norm_num_groups: Count = 8  # GroupNorm groups (must divide every channel count)
    cross_attention_dim: Count | None = None  # width of the prompt tokens the UNet attends to;
    # None: text_hidden_size; otherwise a linear layer projects the text states to it
    text_hidden_size: Count = 64  # CLIP text encoder width
    text_layers: Count = 2  # CLIP text encoder transformer layers
    text_heads: Count = 4  # CLIP text encoder attention heads
    text_intermediate_size: Count = 128  # CLIP text encoder MLP width
    max_length: Count2 = 16  # tokens per prompt with start/end (the longest grammar prompt: 12)
    prediction_type: Literal["epsilon", "v_prediction"] = "v_prediction"  # what the UNet
    # outputs. Measured at the default sizes, batch 32: v with min_snr_gamma = 5 drew clean
    # shapes after 2,000 steps (verifier score 0.6 on training prompts), where unweighted
    # epsilon still drew coloured noise after 3,000 (score 0.02)
    num_train_timesteps: Count = 1000  # T of the DDPM forward process
    beta_schedule: Literal["linear", "scaled_linear", "squaredcos_cap_v2"] = "squaredcos_cap_v2"
    # cosine (Nichol & Dhariwal 2021): at 32 px the linear schedule spends its last third on
    # near-pure noise; SD's scaled_linear is tuned for latents
    beta_start: Positive = 1e-4  # first beta of the linear schedules
    beta_end: Positive = 0.02  # last beta of the linear schedules
    timestep_spacing: Literal["leading", "trailing", "linspace"] = "trailing"  # inference grid;
    # trailing starts at t = T - 1, where training put pure noise (Lin et al. 2024, sec. 3.3)
    guidance_scale: float = 3.0  # classifier-free guidance weight w: u + w (c - u); 1 = none
    prompt_dropout: Share = 0.1  # probability of training on the empty prompt, which is what
    # gives guidance its unconditional prediction
    min_snr_gamma: Positive | None = 5.0  # Min-SNR loss weighting (Hang et al. 2023) with this
    # gamma, pre-training and fine-tuning alike; None: plain MSE
    vae: VAEConfig | None = None  # None: pixel space; else SD-style latents through this VAE

    def __post_init__(self):
        levels = len(self.block_out_channels)
        if self.sample_size % 2 ** (levels - 1 + self._vae_levels()):
            raise ConfigError(
                f"model.sample_size: {self.sample_size} not divisible by the "
                "down-sampling of the UNet (and VAE)"
            )
        if any(c % self.norm_num_groups for c in self.block_out_channels):
            raise ConfigError(
                f"model.norm_num_groups: {self.norm_num_groups} must divide "
                f"every block_out_channels {self.block_out_channels}"
            )
        if any(c % self.attention_heads for c in self.block_out_channels):
            raise ConfigError(
                f"model.attention_heads: {self.attention_heads} must divide "
                f"every block_out_channels {self.block_out_channels}"
            )
        if self.text_hidden_size % self.text_heads:
            raise ConfigError(
                f"model.text_heads: {self.text_heads} must divide "
                f"text_hidden_size {self.text_hidden_size}"
            )
        if not set(self.cross_attention_levels) <= set(range(levels)):
            raise ConfigError(
                f"model.cross_attention_levels: {self.cross_attention_levels} "
                f"must lie in 0..{levels - 1}"
            )

    def _vae_levels(self) -> int:
        return 0 if self.vae is None else len(self.vae.block_out_channels) - 1


@dataclass
class StableDiffusionConfig:
    """Stable Diffusion v2 (or any SD-family diffusers folder) as the base: see
    graftbench/tasks/t2i/stable_diffusion.py, which loads it."""

    path: str = ""  # a local diffusers folder in save_pretrained layout (model_index.json,
    # unet/, vae/, text_encoder/, tokenizer/, scheduler/), e.g. the snapshot folder of
    # stabilityai/stable-diffusion-2-1-base in the Hugging Face cache
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"  # the networks' dtype
    guidance_scale: Guidance = 7.5  # classifier-free guidance weight w: u + w (c - u); 1 = none
    min_snr_gamma: Positive | None = None  # Min-SNR loss weighting of fine-tuning; None: plain MSE
    gradient_checkpointing: bool = False  # recompute UNet activations in backward (memory)
    channels_last: bool = False  # UNet weights and activations in NHWC (faster convolutions
    # on tensor cores)
    compile: bool = False  # torch.compile the UNet in place (minutes of compile time, repaid
    # over many sampling steps; benchmarks/sd_sampler.py measures both)
    decode_batch: Count = 8  # latents the VAE decodes at once (memory, not maths)
