"""The Stable Diffusion adapter on a tiny SD pipeline assembled offline from configs: it
samples what diffusers' own StableDiffusionPipeline samples, and GRAFT, P-GRAFT and DDPO run
through it unchanged."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from diffusers import (
    DDIMScheduler,
    StableDiffusionPipeline,
)

from graftbench.config import InputError
from graftbench.methods.ddpo import DDPO, DDPOConfig
from graftbench.methods.graft import Graft, GraftConfig
from graftbench.methods.loop import LoopConfig, run
from graftbench.methods.pgraft import PGraft, PGraftConfig, adapters_disabled
from graftbench.methods.reward import image_reward
from graftbench.methods.updater import OptimConfig
from graftbench.models.base import LoraSettings
from graftbench.sampling.diffusion import sample_diffusion
from graftbench.tasks.t2i.stable_diffusion import StableDiffusionAdapter, StableDiffusionConfig

PROMPTS = ["a red circle", "a blue square left of a green triangle"]


def load(folder, **kw):
    return StableDiffusionAdapter.from_pretrained(StableDiffusionConfig(path=str(folder), **kw))


def test_guided_ddim_sampling_equals_diffusers_pipeline(sd_folder):
    model = load(sd_folder, guidance_scale=4.0)
    pipe = StableDiffusionPipeline.from_pretrained(sd_folder, local_files_only=True)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    latents = torch.randn(2, *model.sample_shape, generator=torch.Generator().manual_seed(3))
    theirs = pipe(
        PROMPTS,
        latents=latents.clone(),
        num_inference_steps=4,
        guidance_scale=4.0,
        eta=0.0,
        output_type="pt",
    ).images
    with torch.no_grad():
        cond = model.encode_condition(PROMPTS)
        traj = sample_diffusion(
            model.guided(cond),
            model.scheduler("ddim"),
            latents.clone(),
            num_steps=4,
            generator=torch.Generator().manual_seed(0),
        )
        ours = model.decode(traj.sample)
    assert ours.shape == theirs.shape == (2, 3, 16, 16)
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)
    assert model.prediction_type == "epsilon" and model.max_length == 16


@pytest.mark.parametrize("name", ["graft", "pgraft_lora", "ddpo"])
def test_methods_run_unchanged_through_the_sd_adapter(sd_folder, name, tmp_path):
    model = load(sd_folder, guidance_scale=2.0)
    loop = LoopConfig(reward_budget=4, prompts_per_round=2, samples_per_prompt=2, num_steps=3)
    unet = OptimConfig(trainable="unet", batch_size=2, lr=1e-3)
    x = torch.randn(2, *model.sample_shape, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([900, 100])
    with torch.no_grad():
        cond = model.encode_condition(PROMPTS)
        ref = model.denoise(x, t, cond)
    method = {
        "graft": lambda: Graft(model, GraftConfig(loop=loop, optim=unet)),
        "pgraft_lora": lambda: PGraft(
            model,
            PGraftConfig(
                loop=loop,
                intermediate_step=1,
                optim=OptimConfig(
                    trainable="lora", lora=LoraSettings(rank=2), batch_size=2, lr=1e-3
                ),
            ),
        ),
        "ddpo": lambda: DDPO(model, DDPOConfig(loop=loop, optim=unet, clip_range=0.2)),
    }[name]()

    def brightness(images, prompts):  # a stand-in reward on the decoded images
        assert images.dtype == np.uint8 and len(images) == len(prompts)
        return images.reshape(len(images), -1).mean(1) / 255

    (row,) = run(method, PROMPTS, image_reward(brightness), loop)
    assert row["reward_queries"] == 4 and row["sampler_nfe"] == 4 * 3
    assert all(math.isfinite(v) for v in row.values() if isinstance(v, float) and v == v)
    if name == "ddpo":
        assert row["ratio_first_dev"] < 1e-3
    with torch.no_grad():
        tuned = model.denoise(x, t, cond)
        assert (tuned - ref).abs().amax() > 0  # it trained
        if name == "pgraft_lora":  # only the adapters did: switched off, the base is back
            with adapters_disabled(model.network):
                torch.testing.assert_close(model.denoise(x, t, cond), ref)
    assert not any(p.requires_grad for p in model.network.text_encoder.parameters())
    # the saved run reloads from the folder plus what it trained, with identical outputs
    model.save(tmp_path / "run.pt", {"run": name})
    back = StableDiffusionAdapter.load(tmp_path / "run.pt")
    with torch.no_grad():
        torch.testing.assert_close(back.denoise(x, t, cond), tuned)


def test_half_precision_runs_and_returns_float32(sd_folder):
    model = load(sd_folder, dtype="bfloat16")
    assert model.network.unet.dtype == torch.bfloat16
    x = torch.randn(1, *model.sample_shape)
    with torch.no_grad():
        out = model.denoise(x, torch.tensor([500]), model.encode_condition(PROMPTS[:1]))
        image = model.decode(x)
    assert out.dtype == image.dtype == torch.float32 and torch.isfinite(out).all()


def test_missing_folder_and_parts_are_named(sd_folder, tmp_path):
    with pytest.raises(InputError, match="'/no/such/sd' is not a folder; expected a diffusers"):
        load("/no/such/sd")
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "model_index.json").write_text("{}")
    (partial / "unet").mkdir()
    with pytest.raises(InputError, match="missing vae, text_encoder, tokenizer, scheduler"):
        load(partial)
