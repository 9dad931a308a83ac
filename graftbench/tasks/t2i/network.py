"""The networks of the small text-to-image model, built from config with random weights: a
diffusers UNet2DConditionModel cross-attending to a transformers CLIPTextModel, and an optional
AutoencoderKL (SD's parts, at the sizes of `model_config.Text2ImageConfig`)."""

from __future__ import annotations

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel

from graftbench.tasks.t2i.model_config import Text2ImageConfig


class Text2ImageNetwork(torch.nn.Module):
    """Everything `train.fit` and the methods update, as one module: `unet`, `text_encoder`
    and an optional `vae`, which is always frozen (it defines the space, not the model)."""

    def __init__(self, unet, text_encoder, vae=None):
        super().__init__()
        self.unet, self.text_encoder, self.vae = unet, text_encoder, vae
        if vae is not None:
            vae.requires_grad_(False)


def build_network(cfg: Text2ImageConfig, tokenizer) -> Text2ImageNetwork:
    """Random-initialised networks; the text encoder's vocabulary and special ids are the
    tokenizer's, its positions exactly cfg.max_length."""
    text = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=cfg.text_hidden_size,
            intermediate_size=cfg.text_intermediate_size,
            num_hidden_layers=cfg.text_layers,
            num_attention_heads=cfg.text_heads,
            max_position_embeddings=cfg.max_length,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    vae, side, channels = None, cfg.sample_size, cfg.in_channels
    if (v := cfg.vae) is not None:
        n = len(v.block_out_channels)
        vae = AutoencoderKL(
            in_channels=cfg.in_channels,
            out_channels=cfg.in_channels,
            down_block_types=("DownEncoderBlock2D",) * n,
            up_block_types=("UpDecoderBlock2D",) * n,
            block_out_channels=tuple(v.block_out_channels),
            layers_per_block=v.layers_per_block,
            latent_channels=v.latent_channels,
            norm_num_groups=v.norm_num_groups,
            sample_size=cfg.sample_size,
            scaling_factor=v.scaling_factor,
        )
        side, channels = cfg.sample_size // 2 ** (n - 1), v.latent_channels
    levels = range(len(cfg.block_out_channels))
    attn = cfg.cross_attention_levels
    down = ["CrossAttnDownBlock2D" if i in attn else "DownBlock2D" for i in levels]
    up = ["CrossAttnUpBlock2D" if i in attn else "UpBlock2D" for i in levels]
    project = cfg.cross_attention_dim not in (None, cfg.text_hidden_size)
    unet = UNet2DConditionModel(
        sample_size=side,
        in_channels=channels,
        out_channels=channels,
        down_block_types=tuple(down),
        up_block_types=tuple(reversed(up)),
        block_out_channels=tuple(cfg.block_out_channels),
        layers_per_block=cfg.layers_per_block,
        norm_num_groups=cfg.norm_num_groups,
        cross_attention_dim=cfg.cross_attention_dim or cfg.text_hidden_size,
        encoder_hid_dim=cfg.text_hidden_size if project else None,
        encoder_hid_dim_type="text_proj" if project else None,
        # UNet2DConditionModel reads attention_head_dim as the number of heads (a naming
        # slip diffusers keeps for SD checkpoints) and rejects num_attention_heads
        attention_head_dim=cfg.attention_heads,
        use_linear_projection=True,  # as SD v2
    )
    return Text2ImageNetwork(unet, text, vae)
