"""The small SD-style text-to-image model: offline build, prompts, guidance, training,
sampling with log-probs, LoRA and checkpoints, on a ~65k-parameter UNet (CPU, seconds)."""

from __future__ import annotations

import socket

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler

from graftbench import records
from graftbench.config import ConfigError, parse, to_dict
from graftbench.losses import denoising_loss
from graftbench.models.base import LoraSettings
from graftbench.paths import ddpm_pair
from graftbench.sampling.diffusion import sample_diffusion
from graftbench.tasks.t2i.model import Text2ImageAdapter
from graftbench.tasks.t2i.model_config import Text2ImageConfig
from graftbench.tasks.t2i.pretrain import pretrain_loss, render_batch
from graftbench.tasks.t2i.scenes import SceneConfig, grammar_words, split_prompts

TINY = dict(
    block_out_channels=[8, 16],
    cross_attention_levels=[1],
    norm_num_groups=4,
    attention_heads=2,
    text_hidden_size=16,
    text_layers=1,
    text_heads=2,
    text_intermediate_size=32,
)
PROMPTS = ["a red circle", "two blue squares", "a green triangle to the left of a red square"]


def tiny(seed: int = 0, **kw) -> Text2ImageAdapter:
    torch.manual_seed(seed)
    return Text2ImageAdapter.from_config(parse(Text2ImageConfig, {**TINY, **kw}, "model"))


def _inputs(model, seed=0):
    """States (batch, *sample_shape) and integer timesteps (batch,), one per PROMPTS entry."""
    n, g = len(PROMPTS), torch.Generator().manual_seed(seed)
    x = torch.randn((n, *model.sample_shape), generator=g)
    return x, torch.randint(0, 1000, (n,), generator=g)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Ops on a model this small last microseconds: a second OpenMP thread gains nothing and,
    on a loaded 2-core machine, waits on every barrier (measured 50x slower per forward)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def model(one_thread):
    return tiny()


def test_builds_offline_and_every_grammar_word_is_one_token(model, monkeypatch):
    def no_network(*args, **kwargs):
        raise OSError("the model must build without network access")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    m = tiny(seed=1)
    tok, text = m.tokenizer, m.network.text_encoder.config
    assert (text.vocab_size, text.bos_token_id, text.eos_token_id, text.pad_token_id) == (
        len(tok),
        tok.bos_token_id,
        tok.eos_token_id,
        tok.pad_token_id,
    )
    assert text.max_position_embeddings == m.cfg.max_length
    for w in grammar_words():
        assert len(tok(w, add_special_tokens=False).input_ids) == 1, w
    ids = m.tokenize(PROMPTS)
    assert ids.shape == (3, m.cfg.max_length) and (ids[:, 0] == tok.bos_token_id).all()
    assert m.sample_shape == (3, 32, 32)


def test_encode_condition_shape_and_prompt_dependence(model):
    with torch.no_grad():
        e = model.encode_condition(PROMPTS + [PROMPTS[0]])
        as_dicts = model.encode_condition([{"prompt": p} for p in PROMPTS])
    assert e.shape == (4, model.cfg.max_length, model.cfg.text_hidden_size)
    torch.testing.assert_close(e[0], e[3])
    torch.testing.assert_close(e[:3], as_dicts)
    # "red" vs "blue" at one position: the causal encoder changes that token and every later one
    for i in range(3):
        for j in range(i):
            assert (e[i] - e[j]).abs().amax() > 1e-3


def test_guidance_combines_conditional_and_unconditional(model):
    x, t = _inputs(model)
    with torch.no_grad():
        cond = model.encode_condition(PROMPTS)
        uncond = model.unconditional(len(PROMPTS))
        c, u = model.denoise(x, t, cond), model.denoise(x, t, uncond)
        torch.testing.assert_close(model.guided(cond, scale=1.0)(x, t), c)
        torch.testing.assert_close(model.guided(cond, scale=0.0)(x, t), u, atol=1e-5, rtol=1e-5)
        g = model.guided(cond, scale=2.5)(x, t)  # batched 2B call vs two separate ones
        torch.testing.assert_close(g, u + 2.5 * (c - u), atol=1e-5, rtol=1e-5)
        same = model.guided(cond, scale=7.0, uncond=cond)(x, t)
        torch.testing.assert_close(same, c, atol=1e-5, rtol=1e-5)
        assert (g - c).abs().amax() > 1e-4  # guidance did something


def test_ddpm_pair_matches_diffusers(model):
    s = model.scheduler("ddpm")
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(5, 3, 4, 4, generator=g), torch.randn(5, 3, 4, 4, generator=g)
    t = torch.tensor([0, 10, 500, 900, 999])
    pair = ddpm_pair(x0, noise, t, model.alphas_cumprod, "epsilon")
    torch.testing.assert_close(pair.xt, s.add_noise(x0, noise, t))
    torch.testing.assert_close(pair.target, noise)
    v = ddpm_pair(x0, noise, t, model.alphas_cumprod, "v_prediction").target
    torch.testing.assert_close(v, s.get_velocity(x0, noise, t))


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
@pytest.mark.parametrize("gamma", [None, 5.0])
def test_denoising_loss_weights_match_min_snr(prediction_type, gamma):
    """Against Min-SNR-gamma (Hang et al. 2023), re-derived here: with a network that outputs 0 the
    per-sample error is mean(target^2); the weight is min(SNR, gamma) / SNR for epsilon and
    min(SNR, gamma) / (SNR + 1) for v, SNR = abar / (1 - abar)."""
    m = tiny(prediction_type=prediction_type, min_snr_gamma=gamma)
    m.denoise = lambda x, t, cond: torch.zeros_like(x)
    x0 = torch.randn(6, *m.sample_shape, generator=torch.Generator().manual_seed(1))
    got = denoising_loss(m, x0, None, torch.Generator().manual_seed(2))
    g = torch.Generator().manual_seed(2)  # replay the loss's draws: t, then noise
    t = torch.randint(1000, (6,), generator=g)
    noise = torch.randn(x0.shape, generator=g)
    a = m.alphas_cumprod[t].double().view(-1, 1, 1, 1)
    target = noise if prediction_type == "epsilon" else a.sqrt() * noise - (1 - a).sqrt() * x0
    err = target.pow(2).flatten(1).mean(1)
    snr = (a / (1 - a)).flatten()
    if gamma is None:
        w = torch.ones_like(snr)
    else:
        w = snr.clamp(max=gamma) / (snr if prediction_type == "epsilon" else snr + 1)
    torch.testing.assert_close(got.double(), (w * err).mean(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_training_steps_on_a_fixed_batch_reduce_the_loss(prediction_type):
    m = tiny(prediction_type=prediction_type)
    params = m.trainable_parameters("full")
    prompts = split_prompts(SceneConfig()).train[:4]
    images = render_batch(prompts, np.random.default_rng(0), m.cfg.sample_size)
    x0 = m.encode_images(torch.from_numpy(images).permute(0, 3, 1, 2) / 255.0)
    opt = torch.optim.Adam(params, lr=3e-3)
    losses = []
    for _ in range(30):
        # the same t and noise every step: the loss is one fixed function of the weights
        loss = denoising_loss(
            m, x0, m.encode_condition([p.text for p in prompts]), torch.Generator().manual_seed(0)
        )
        opt.zero_grad()
        loss.backward()
        if not losses:  # joint training: the prompt's gradient reaches the text encoder
            emb = m.network.text_encoder.get_input_embeddings().weight
            assert emb.grad is not None and emb.grad.abs().sum() > 0
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.6 * losses[0], losses


def test_pretrain_loss_replays_from_the_generator_state():
    m = tiny()
    loss_fn = pretrain_loss(m, split_prompts(SceneConfig()).train, batch_size=4)
    g = torch.Generator().manual_seed(3)
    state = g.get_state()
    with torch.no_grad():
        a = loss_fn(0, g)
        g.set_state(state)
        b = loss_fn(0, g)
        c = loss_fn(1, g)
    assert a.item() == b.item() and a.item() != c.item() and torch.isfinite(a)


@pytest.mark.parametrize("kind", ["ddim", "ddpm"])
def test_sampling_with_guidance_gives_images_and_log_probs(model, kind):
    n, steps = 2, 4
    sched = model.scheduler(kind)
    assert isinstance(sched, DDIMScheduler if kind == "ddim" else DDPMScheduler)
    torch.testing.assert_close(sched.alphas_cumprod, model.alphas_cumprod)
    g = torch.Generator().manual_seed(0)
    x = torch.randn((n, *model.sample_shape), generator=g)
    with torch.no_grad():
        den = model.guided(model.encode_condition(PROMPTS[:n]))
        traj = sample_diffusion(den, sched, x, num_steps=steps, generator=g, eta=1.0)
        img = model.decode(traj.sample)
    assert traj.sample.shape == x.shape and traj.nfe == steps
    assert img.shape == (n, 3, 32, 32) and 0 <= img.min() and img.max() <= 1
    assert traj.timesteps[0] == model.cfg.num_train_timesteps - 1  # trailing spacing
    # the last step lands on alpha_bar = 1 (DDIM) or adds no noise (DDPM): no density
    assert traj.log_probs.shape == (n, steps - 1) and torch.isfinite(traj.log_probs).all()


def test_lora_trains_only_adapters_and_starts_at_the_base(model):
    m = tiny()
    x, t = _inputs(m)
    with torch.no_grad():
        cond = m.encode_condition(PROMPTS)
        before = m.denoise(x, t, cond)
    n_unet = sum(p.numel() for p in m.network.unet.parameters())
    params = m.trainable_parameters("lora", LoraSettings(rank=2))
    names = [k for k, p in m.network.named_parameters() if p.requires_grad]
    assert params and all(".lora_A." in k or ".lora_B." in k for k in names)
    assert {k.split(".lora_")[0].rsplit(".", 1)[-1] for k in names} >= {"to_q", "to_k", "to_v"}
    assert any(".to_out.0.lora_" in k for k in names)
    assert sum(p.numel() for p in params) < 0.2 * n_unet
    with torch.no_grad():
        torch.testing.assert_close(m.denoise(x, t, cond), before)
        for k, p in m.network.named_parameters():  # B = 0 made them equal: now move B
            if ".lora_B." in k:
                p.add_(0.1)
        assert (m.denoise(x, t, cond) - before).abs().amax() > 1e-3
    assert len(m.trainable_parameters("full")) > len(params)  # back to full fine-tuning


@pytest.mark.parametrize("use_lora", [False, True])
def test_save_then_load_gives_identical_outputs(tmp_path, use_lora):
    m = tiny(prediction_type="v_prediction", guidance_scale=2.0)
    if use_lora:
        m.trainable_parameters("lora", LoraSettings(rank=2, alpha=4.0))
        with torch.no_grad():
            for k, p in m.network.named_parameters():
                if ".lora_B." in k:
                    p.normal_()
    m.save(tmp_path / "model.pt", {"seed": 0})
    back = Text2ImageAdapter.load(tmp_path / "model.pt")
    assert back.cfg == m.cfg and back.lora == m.lora and back.tokenizer_files == m.tokenizer_files
    x, t = _inputs(m)
    with torch.no_grad():
        want = m.guided(m.encode_condition(PROMPTS))(x, t)
        torch.testing.assert_close(back.guided(back.encode_condition(PROMPTS))(x, t), want)


def test_loads_a_fit_checkpoint_and_rejects_unknown_lora(tmp_path):
    """train.fit stores {"model": state dict} and the run config: the tokenizer is rebuilt."""
    m = tiny()
    config = {"model": to_dict(m.cfg)}
    records.save_checkpoint(
        tmp_path / "fit.pt", {"model": m.network.state_dict()}, config, kind="t2i model"
    )
    back = Text2ImageAdapter.load(tmp_path / "fit.pt")
    x, t = _inputs(m)
    with torch.no_grad():
        torch.testing.assert_close(
            back.denoise(x, t, back.encode_condition(PROMPTS)),
            m.denoise(x, t, m.encode_condition(PROMPTS)),
        )
    m.trainable_parameters("lora")
    records.save_checkpoint(
        tmp_path / "lora.pt", {"model": m.network.state_dict()}, config, kind="t2i model"
    )
    with pytest.raises(ValueError, match="pass `lora`"):
        Text2ImageAdapter.load(tmp_path / "lora.pt")
    assert Text2ImageAdapter.load(tmp_path / "lora.pt", lora=LoraSettings()).lora is not None


def test_latent_path_and_config_checks():
    m = tiny(vae={"block_out_channels": [8, 8], "norm_num_groups": 4}, cross_attention_dim=24)
    assert m.sample_shape == (4, 16, 16) and not m.scheduler("ddim").config.clip_sample
    assert not any(p.requires_grad for p in m.network.vae.parameters())
    with torch.no_grad():
        z = m.encode_images(torch.rand(2, 3, 32, 32))
        out = m.denoise(z, torch.tensor([3, 700]), m.encode_condition(PROMPTS[:2]))
        img = m.decode(z)
    assert z.shape == out.shape == (2, 4, 16, 16) and img.shape == (2, 3, 32, 32)
    with pytest.raises(ConfigError, match="norm_num_groups"):
        parse(Text2ImageConfig, {**TINY, "norm_num_groups": 3}, "model")
    with pytest.raises(ConfigError, match="prediction_type"):
        parse(Text2ImageConfig, {"prediction_type": "flow"}, "model")
    with pytest.raises(ValueError, match="flow_euler"):
        m.scheduler("flow_euler")
