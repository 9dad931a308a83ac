"""GRAFT, P-GRAFT and DDPO on a toy whose answer is known, plus one round of each on the
small text-to-image model.

Toy: a conditional v-prediction MLP over 2-D points. Prompt c's data is an even mixture of
two Gaussians (std 0.2) at +-1.5 along axis c; the reward is minus the distance to the
positive mode, so the base scores about -1.6 (half its mass sits 3 away) and a model that
moved all its mass to the positive mode scores about -0.2. v rather than epsilon: with the
cosine schedule alpha_bar(999) is ~0, where an epsilon model's x0 estimate divides its error
by sqrt(alpha_bar) (the T2I model predicts v for the same reason).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler

from graftbench.config import ConfigError, parse
from graftbench.losses import denoising_loss
from graftbench.methods.ddpo import DDPO, DDPOConfig, PromptStatTracker, ppo_loss
from graftbench.methods.graft import Graft, GraftConfig
from graftbench.methods.loop import LoopConfig, run
from graftbench.methods.pgraft import PGraft, PGraftConfig, adapters_disabled, frozen_copy
from graftbench.methods.reward import RewardCounter, image_reward
from graftbench.methods.rollout import Rollout
from graftbench.methods.selection import SelectionConfig
from graftbench.methods.updater import OptimConfig
from graftbench.models.diffusion import DiffusionAdapter
from graftbench.sampling.diffusion import transition_log_prob

CENTRES = torch.tensor([[[-1.5, 0.0], [1.5, 0.0]], [[0.0, -1.5], [0.0, 1.5]]])  # (prompt, mode, 2)
TARGETS = CENTRES[:, 1]  # (prompt, 2): the rewarded mode


class MLP(torch.nn.Module):
    def __init__(self, width: int = 64):
        super().__init__()
        self.register_buffer("freqs", torch.arange(1, 9).float() * math.pi)
        self.net = torch.nn.Sequential(
            torch.nn.Linear(2 + 16 + 2, width),
            torch.nn.SiLU(),
            torch.nn.Linear(width, width),
            torch.nn.SiLU(),
            torch.nn.Linear(width, 2),
        )

    def forward(self, x, t, c):
        a = (t.float() / 1000)[:, None] * self.freqs
        return self.net(torch.cat([x, a.sin(), a.cos(), c], 1))


class Toy(DiffusionAdapter):
    """The minimal adapter: conditions are prompt indices 0/1, embedded one-hot."""

    prediction_type = "v_prediction"
    sample_shape = (2,)

    def __init__(self):
        self.network = MLP()
        self.alphas_cumprod = self.scheduler("ddpm").alphas_cumprod

    def encode_condition(self, conditions):
        return torch.nn.functional.one_hot(torch.as_tensor(conditions), 2).float()

    def denoise(self, x, t, cond):
        return self.network(x, t, cond)

    def decode(self, x):
        return x

    def scheduler(self, kind):
        common = dict(
            num_train_timesteps=1000,
            beta_schedule="squaredcos_cap_v2",
            clip_sample=False,
            timestep_spacing="trailing",
            prediction_type="v_prediction",
        )
        return (
            DDIMScheduler(**common, set_alpha_to_one=True)
            if kind == "ddim"
            else DDPMScheduler(**common)
        )


def reward(x, conds):
    return -(x - TARGETS[torch.as_tensor(conds)]).norm(dim=1)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def base(one_thread) -> Toy:
    """Pre-trained on the mixture with the T2I pre-training loss (`denoising_loss`)."""
    torch.manual_seed(0)
    model, g, steps = Toy(), torch.Generator().manual_seed(0), 1500
    opt = torch.optim.Adam(model.network.parameters(), lr=3e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps, eta_min=1e-4)
    for _ in range(steps):
        c, k = torch.randint(2, (256,), generator=g), torch.randint(2, (256,), generator=g)
        x0 = CENTRES[c, k] + 0.2 * torch.randn(256, 2, generator=g)
        loss = denoising_loss(model, x0, model.encode_condition(c), g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return model


LOOP = LoopConfig(
    reward_budget=512, prompts_per_round=2, samples_per_prompt=64, num_steps=10, sample_batch=256
)
SEL = SelectionConfig(rule="top_k", k=16)
FULL = OptimConfig(trainable="full", lr=1e-3, batch_size=32)
# the same budget of 512 reward queries (4 rounds) for every method; GRAFT-family training is
# 50 passes over each round's 32 accepted samples, DDPO two PPO epochs per round
METHODS = {
    "graft": lambda m: Graft(m, GraftConfig(loop=LOOP, selection=SEL, optim=FULL, epochs=50)),
    "pgraft": lambda m: PGraft(
        m, PGraftConfig(loop=LOOP, selection=SEL, optim=FULL, epochs=50, intermediate_step=5)
    ),
    "ddpo": lambda m: DDPO(
        m,
        DDPOConfig(
            loop=LOOP, optim=OptimConfig(trainable="full", lr=3e-3), inner_epochs=2, clip_range=0.2
        ),
    ),
}


def evaluate(method, n: int = 512) -> float:
    """Mean reward of n fresh samples (half per prompt) from the method's sampler."""
    conds = [0] * (n // 2) + [1] * (n // 2)
    return (
        reward(method.sample(conds, torch.Generator().manual_seed(123)).final, conds).mean().item()
    )


@pytest.mark.parametrize("name", list(METHODS))
def test_each_method_raises_the_reward_at_the_same_budget(base, name, tmp_path):
    before = evaluate(Graft(copy.deepcopy(base), GraftConfig(loop=LOOP, optim=FULL)))
    method = METHODS[name](copy.deepcopy(base))
    rows = run(method, [0, 1], reward, LOOP, log=tmp_path / "log.jsonl")
    after = evaluate(method)
    train = [r["reward_mean"] for r in rows]
    print(f"{name}: eval reward {before:.3f} -> {after:.3f}; training reward per round {train}")
    assert [r["reward_queries"] for r in rows] == [128, 256, 384, 512]
    assert after > before + 0.5 and train[-1] > train[0] + 0.3
    assert len((tmp_path / "log.jsonl").read_text().splitlines()) == 4
    assert rows[-1]["sampler_nfe"] == 512 * LOOP.num_steps and rows[-1]["train_s"] > 0


def test_the_loop_stops_exactly_at_the_budget(base):
    scored = []

    def spy(x, conds):
        scored.append(len(conds))
        return reward(x, conds)

    loop = LoopConfig(reward_budget=80, prompts_per_round=4, samples_per_prompt=8, num_steps=4)
    rows = run(Graft(copy.deepcopy(base), GraftConfig(loop=loop, optim=FULL)), [0, 1], spy, loop)
    assert scored == [32, 32, 16] and sum(scored) == 80
    assert [(r["reward_queries"], r["n_prompts"]) for r in rows] == [(32, 4), (64, 4), (80, 2)]
    with pytest.raises(ConfigError, match="multiple of samples_per_prompt"):
        LoopConfig(reward_budget=84, samples_per_prompt=8)
    nan = Graft(copy.deepcopy(base), GraftConfig(loop=loop, optim=FULL))
    nan.model.denoise = lambda x, t, cond: torch.full_like(x, float("nan"))
    with pytest.raises(FloatingPointError, match="non-finite"):
        run(nan, [0, 1], spy, loop)

    def half_nan(x, conds):
        r = reward(x, conds)
        r[len(r) // 2 :] = float("nan")
        return r

    bad = Graft(copy.deepcopy(base), GraftConfig(loop=loop, optim=FULL))
    with pytest.raises(
        FloatingPointError,
        match=r"round 0: the reward returned 16 non-finite "
        r"values of 32 \(the first, nan, for sample 16, condition [01]\)",
    ):
        run(bad, [0, 1], half_nan, loop)
    counter = RewardCounter(reward, 10)
    counter(torch.zeros(8, 2), [0] * 8)
    with pytest.raises(RuntimeError, match="budget"):
        counter(torch.zeros(4, 2), [0] * 4)


RESUME_LOOP = LoopConfig(
    reward_budget=192, prompts_per_round=2, samples_per_prompt=16, num_steps=6, sample_batch=64
)


@pytest.mark.parametrize("name", list(METHODS))
def test_a_killed_loop_resumes_from_its_checkpoint_with_the_same_rounds(base, name, tmp_path):
    """6 rounds; the reward raises during round 3 (as a kill would land), after rounds 0-2
    were checkpointed; the rerun continues from round 3 and ends with the weights, optimiser
    state and rounds of an uninterrupted run, bit for bit."""

    def build():
        method = METHODS[name](copy.deepcopy(base))
        method.cfg = dataclasses.replace(method.cfg, loop=RESUME_LOOP)
        return method

    def params(method):
        return [p.detach().clone() for p in method.model.network.parameters()]

    whole = build()
    rows = run(
        whole, [0, 1], reward, RESUME_LOOP, checkpoint=tmp_path / "a.partial", checkpoint_every_s=0
    )
    calls = []

    def killed(x, conds):
        if len(calls) == 3:
            raise KeyboardInterrupt
        calls.append(1)
        return reward(x, conds)

    ckpt, log = tmp_path / "b.partial", tmp_path / "b.jsonl"
    with pytest.raises(KeyboardInterrupt):
        run(build(), [0, 1], killed, RESUME_LOOP, checkpoint=ckpt, checkpoint_every_s=0, log=log)
    assert len(log.read_text().splitlines()) == 3
    resumed, scored = build(), []

    def counted(x, conds):
        scored.append(len(conds))
        return reward(x, conds)

    again = run(
        resumed, [0, 1], counted, RESUME_LOOP, checkpoint=ckpt, checkpoint_every_s=0, log=log
    )
    assert len(scored) == 3, "the rerun must continue after round 2, not start over"
    assert len(again) == len(rows) == 6
    skip = {"sample_s", "reward_s", "train_s", "elapsed_s"}
    for a, b in zip(rows, again, strict=True):
        assert {k: v for k, v in a.items() if k not in skip} == {
            k: v for k, v in b.items() if k not in skip
        }
    assert all(torch.equal(p, q) for p, q in zip(params(whole), params(resumed), strict=True))
    assert [r["round"] for r in map(json.loads, log.read_text().splitlines())] == list(range(6))
    # a checkpoint written under another config is not resumed
    other = build()
    other.cfg = dataclasses.replace(other.cfg, optim=dataclasses.replace(other.cfg.optim, lr=1e-5))
    scored.clear()
    run(other, [0, 1], counted, RESUME_LOOP, checkpoint=ckpt)
    assert len(scored) == 6


def test_graft_top_k_trains_only_on_accepted_samples(base):
    seen = []

    def spy_loss(model, x, cond, g):
        seen.append(x.detach().clone())
        return denoising_loss(model, x, cond, g)

    loop = LoopConfig(reward_budget=32, prompts_per_round=2, samples_per_prompt=16, num_steps=4)
    graft = Graft(
        copy.deepcopy(base),
        GraftConfig(loop=loop, selection=SelectionConfig(k=3), optim=FULL, epochs=2),
        loss_fn=spy_loss,
    )
    inputs = [0] * 16 + [1] * 16
    roll = graft.sample(inputs, torch.Generator().manual_seed(0))
    r = reward(roll.final, inputs).view(2, 16)
    stats = graft.update(roll, r, torch.Generator().manual_seed(1))
    top = r.topk(3, dim=1).indices + torch.tensor([[0], [16]])
    want = {tuple(v) for v in roll.final[top.flatten()].tolist()}
    got = [tuple(v) for v in torch.cat(seen).tolist()]
    assert stats["n_accepted"] == 6 and len(got) == 12 and set(got) == want  # 2 epochs of 6

    # de-duplication: two identical best samples count once
    final = roll.final.clone()
    final[1] = final[0]
    r2 = r.clone().flatten()
    r2[:2] = 1.0
    dup = Rollout(inputs, final, roll.trajectory, roll.nfe, decoded=final)
    graft.cfg.selection = SelectionConfig(k=2, dedup=True)
    idx = graft.accept(dup, r2.view(2, 16), torch.Generator())
    assert 0 in idx and 1 not in idx and len(idx) == 4


def _recording(fn, calls):
    def wrapped(x, t, cond):
        calls.append(t.clone())
        return fn(x, t, cond)

    return wrapped


def test_pgraft_changes_only_times_above_t_i_and_stitches(base):
    loop = LoopConfig(reward_budget=64, prompts_per_round=2, samples_per_prompt=16, num_steps=10)
    cfg = PGraftConfig(
        loop=loop, selection=SelectionConfig(k=4), optim=FULL, epochs=3, intermediate_step=4
    )
    pg = PGraft(copy.deepcopy(base), cfg)
    trained = []
    pg.model.denoise = _recording(pg.model.denoise, trained)
    rows = run(pg, [0, 1], reward, loop)
    t_i = rows[0]["t_intermediate"]
    assert torch.cat(trained).min() > t_i  # P-GRAFT's loss only ever asks for t > t_I
    for p, q in zip(pg.base.network.parameters(), base.network.parameters(), strict=True):
        assert torch.equal(p, q) and not p.requires_grad  # the base segment is the base model
    assert any(
        not torch.equal(p, q)
        for p, q in zip(pg.model.network.parameters(), base.network.parameters(), strict=True)
    )

    fine, frozen = [], []
    pg.model.denoise = _recording(Toy.denoise.__get__(pg.model), fine)
    pg.base.denoise = _recording(Toy.denoise.__get__(pg.base), frozen)
    roll = pg.sample([0, 1], torch.Generator().manual_seed(0))
    ts = roll.trajectory.timesteps
    assert int(ts[4]) == t_i and sorted(roll.trajectory.states) == [4, 10]
    assert [int(t[0]) for t in fine] == ts[:4].tolist() and all(int(t[0]) > t_i for t in fine)
    assert [int(t[0]) for t in frozen] == ts[4:].tolist() and all(int(t[0]) <= t_i for t in frozen)


@pytest.mark.parametrize("log_prob", ["mean", "sum"])
def test_ddpo_recomputes_the_sampler_log_probs_and_ratio_starts_at_one(base, log_prob):
    loop = LoopConfig(reward_budget=32, prompts_per_round=2, samples_per_prompt=16, num_steps=4)
    cfg = DDPOConfig(loop=loop, optim=FULL, clip_range=0.2, log_prob=log_prob)
    ddpo = DDPO(copy.deepcopy(base), cfg)
    inputs = [0] * 16 + [1] * 16
    roll = ddpo.sample(inputs, torch.Generator().manual_seed(0))
    traj = roll.trajectory
    # the last step lands on alpha_bar = 1: deterministic, no density, not trained
    assert traj.log_probs.shape == (32, 3) and traj.stochastic_steps == [0, 1, 2]
    cond = ddpo.model.encode_condition(inputs)
    with torch.no_grad():
        for j, i in enumerate(traj.stochastic_steps):
            x, t = traj.states[i], traj.timesteps[i]
            out = ddpo.model.denoise(x, t.expand(32), cond)
            lp = transition_log_prob(ddpo.scheduler, out, t, x, traj.states[i + 1], 1.0)
            # the same float32 mean on both sides, the density summed in float64
            torch.testing.assert_close(lp, traj.log_probs[:, j], rtol=0, atol=1e-9)
    stats = ddpo.update(roll, reward(roll.final, inputs).view(2, 16), torch.Generator())
    assert stats["ratio_first_dev"] < 1e-12 and math.isfinite(stats["policy_loss"])


def test_ppo_clip_bounds_the_objective():
    eps, old = 0.2, torch.zeros(4)
    adv = torch.tensor([1.0, 1.0, -1.0, -1.0])
    lp = torch.log(torch.tensor([1.5, 1.1, 0.5, 1.5])).requires_grad_(True)
    loss, ratio = ppo_loss(lp, old, adv, eps)
    # ratios beyond the clip in the direction the advantage favours are cut to 1 +- eps and
    # get no gradient; inside the clip, or moving against the advantage, they count in full
    want = torch.tensor([-1.2, -1.1, 0.8, 1.5]).mean()
    torch.testing.assert_close(loss, want)
    loss.backward()
    torch.testing.assert_close(lp.grad, torch.tensor([0.0, -1.1, 0.0, 1.5]) / 4)
    torch.testing.assert_close(ratio.detach(), torch.tensor([1.5, 1.1, 0.5, 1.5]))


def test_prompt_stat_tracker_falls_back_to_the_batch_then_uses_its_history():
    tracker = PromptStatTracker(buffer=4, min_count=3)
    r = torch.tensor([1.0, 3.0, 10.0, 30.0])
    a = tracker.advantages(["a", "a", "b", "b"], r)  # 2 < min_count each: batch statistics
    torch.testing.assert_close(a, (r - r.mean()) / (r.std(correction=0) + 1e-6))
    a = tracker.advantages(["a", "b"], torch.tensor([2.0, 20.0]))  # 3 each: own history
    torch.testing.assert_close(a, torch.zeros(2), atol=1e-5, rtol=0)


def test_configs_reject_bad_values():
    with pytest.raises(ConfigError, match="intermediate_step"):
        parse(PGraftConfig, {"loop": {"num_steps": 10}, "intermediate_step": 10})
    with pytest.raises(ConfigError, match="ddim"):
        parse(DDPOConfig, {"loop": {"scheduler": "ddpm"}})
    with pytest.raises(ConfigError, match="selection.k"):
        parse(GraftConfig, {"loop": {"samples_per_prompt": 4}, "selection": {"k": 5}})
    with pytest.raises(ConfigError, match="trainable"):
        parse(GraftConfig, {"optim": {"trainable": "half"}})
    cfg = parse(PGraftConfig, {"optim": {"trainable": "lora", "lora": {"rank": 2}}})
    assert cfg.optim.lora.rank == 2 and cfg.intermediate_step == 10
    with pytest.raises(ConfigError, match="only 'full'"):
        Graft(Toy(), GraftConfig(optim=OptimConfig(trainable="lora")))


# -- the small text-to-image model, unchanged: one round of each method -----------------------


@pytest.mark.parametrize("name", ["graft", "pgraft_lora", "ddpo"])
def test_methods_run_unchanged_on_the_text_to_image_model(name, tmp_path):
    from graftbench.models.base import LoraSettings
    from graftbench.tasks.t2i.model import Text2ImageAdapter
    from graftbench.tasks.t2i.model_config import Text2ImageConfig
    from graftbench.tasks.t2i.scenes import SceneConfig, split_prompts
    from graftbench.tasks.t2i.verifier import verifier_reward
    from tests.test_text2image import TINY  # its tiny size

    torch.manual_seed(0)
    model = Text2ImageAdapter.from_config(parse(Text2ImageConfig, TINY, "model"))
    prompts = list(split_prompts(SceneConfig()).train[:2])
    loop = LoopConfig(
        reward_budget=4,
        prompts_per_round=2,
        samples_per_prompt=2,
        num_steps=3,
        count_flops=name == "graft",
    )
    unet = OptimConfig(trainable="unet", batch_size=2)
    pristine = frozen_copy(model)
    method = {
        "graft": lambda: Graft(model, GraftConfig(loop=loop, optim=unet)),
        "pgraft_lora": lambda: PGraft(
            model,
            PGraftConfig(
                loop=loop,
                intermediate_step=1,
                optim=OptimConfig(trainable="lora", lora=LoraSettings(rank=2), batch_size=2),
            ),
        ),
        "ddpo": lambda: DDPO(model, DDPOConfig(loop=loop, optim=unet, clip_range=0.2)),
    }[name]()
    rows = run(
        method,
        prompts,
        image_reward(verifier_reward()),
        loop,
        model_input=lambda p: p.text,
        log=tmp_path / "log.jsonl",
    )
    (row,) = rows
    assert row["reward_queries"] == 4 and row["sampler_nfe"] == 4 * 3 and row["n_accepted"] >= 2
    assert all(math.isfinite(v) for v in row.values() if isinstance(v, float) and v == v)
    assert 0 <= row["reward_mean"] <= 1
    if name == "graft":
        assert row["sample_flops"] > 0 and row["train_flops"] > 0
    if name == "ddpo":
        assert row["ratio_first_dev"] < 1e-3
    g = torch.Generator().manual_seed(0)
    x, t = torch.randn(2, *model.sample_shape, generator=g), torch.tensor([900, 100])
    with torch.no_grad():
        cond = model.encode_condition([p.text for p in prompts])
        tuned, ref = model.denoise(x, t, cond), pristine.denoise(x, t, cond)
        assert tuned.shape == x.shape and torch.isfinite(tuned).all()
        if name == "pgraft_lora":  # the base segment is the pre-trained UNet, LoRA switched off
            with adapters_disabled(model.network):
                torch.testing.assert_close(model.denoise(x, t, cond), ref)
            assert (tuned - ref).abs().amax() > 0
            assert not any(
                p.requires_grad for k, p in model.network.named_parameters() if "lora_" not in k
            )
            with pytest.raises(ValueError, match="already has adapters"):
                PGraft(model, method.cfg)


def test_graft_t_min_leaves_the_low_noise_end_out():
    """GRAFT's `t_min`: the denoising loss draws t from {t_min, ..., T - 1} only; 0 (the
    default) is the loss of pre-training, drawing the same t from the same generator."""
    from types import SimpleNamespace

    seen = []
    model = SimpleNamespace(
        alphas_cumprod=DDPMScheduler().alphas_cumprod,
        prediction_type="epsilon",
        min_snr_gamma=None,
        denoise=lambda x, t, cond: seen.append(t) or torch.zeros_like(x),
    )
    x0 = torch.zeros(4096, 2)
    denoising_loss(model, x0, None, torch.Generator().manual_seed(0), 300)
    assert seen[-1].min() >= 300 and seen[-1].max() == 999
    denoising_loss(model, x0, None, torch.Generator().manual_seed(0))
    denoising_loss(model, x0, None, torch.Generator().manual_seed(0), 0)
    assert seen[-1].min() == 0 and torch.equal(seen[-1], seen[-2])


def test_graft_anchor_adds_the_distance_to_the_frozen_base(base):
    """GRAFT's `anchor`: the loss gains weight x |f_model - f_base|^2 at the same (x_t, t);
    with the model still equal to its base the term is 0 and the loss is pre-training's,
    from the same draws of t and noise."""
    tuned = frozen_copy(base)
    tuned.network.requires_grad_(True)
    x0, cond = (
        torch.randn(256, 2, generator=torch.Generator().manual_seed(1)),
        base.encode_condition([0] * 256),
    )

    def loss(m, anchor):
        return denoising_loss(m, x0, cond, torch.Generator().manual_seed(0), 0, anchor)

    assert loss(tuned, (base, 2.0)).item() == loss(tuned, None).item()  # equal networks
    with torch.no_grad():
        for p in tuned.network.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    g = torch.Generator().manual_seed(0)  # the draws denoising_loss makes, replayed by hand
    t = torch.randint(0, 1000, (256,), generator=g)
    noise = torch.randn(x0.shape, generator=g)
    abar = base.alphas_cumprod[t][:, None]
    xt = abar.sqrt() * x0 + (1 - abar).sqrt() * noise
    with torch.no_grad():
        gap = (tuned.denoise(xt, t, cond) - base.denoise(xt, t, cond)).pow(2).mean(1).mean()
    assert gap > 1e-4  # the perturbation moved the outputs, so the check below is not trivial
    torch.testing.assert_close(loss(tuned, (base, 2.0)) - loss(tuned, None), 2 * gap)


def test_graft_with_an_anchor_keeps_an_untouched_copy_of_the_base(base):
    model = frozen_copy(base)
    model.network.requires_grad_(True)
    loop = LoopConfig(reward_budget=8, prompts_per_round=2, samples_per_prompt=4, num_steps=3)
    method = Graft(model, GraftConfig(loop=loop, optim=FULL, anchor=1.0, epochs=3))
    run(method, [0, 1], reward, loop)
    before = dict(base.network.named_parameters())
    for k, p in method.anchor_base.network.named_parameters():
        assert not p.requires_grad and torch.equal(p, before[k]), k
    assert any(not torch.equal(p, before[k]) for k, p in model.network.named_parameters())
    assert Graft(frozen_copy(base), GraftConfig(loop=loop, optim=FULL)).anchor_base is None


def test_anchor_is_validated_and_is_graft_only():
    with pytest.raises(ConfigError, match=r"anchor: -0.5 is out of range; allowed: >= 0"):
        parse(GraftConfig, {"anchor": -0.5})
    with pytest.raises(ConfigError, match="anchor: 1.0; it is GRAFT's"):
        parse(PGraftConfig, {"loop": {"num_steps": 10}, "intermediate_step": 3, "anchor": 1.0})
    with pytest.raises(ConfigError, match="anchor: 1.0; it anchors the denoising loss"):
        Graft(Toy(), GraftConfig(anchor=1.0), loss_fn=lambda *a: torch.zeros(()))


def test_t_min_is_validated_and_is_graft_only():
    with pytest.raises(ConfigError, match=r"t_min: -1 is out of range; allowed: >= 0"):
        parse(GraftConfig, {"t_min": -1})
    with pytest.raises(ConfigError, match="t_min: 5; it is GRAFT's"):
        parse(PGraftConfig, {"loop": {"num_steps": 10}, "intermediate_step": 3, "t_min": 5})
