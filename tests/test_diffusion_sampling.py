"""sample_diffusion against DDPM/DDIM step densities re-derived here from `alphas_cumprod`
(Song et al. 2021, eqs. 12 and 16; Ho et al. 2020, eqs. 6-7), and against the flow solver."""

import math

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler, FlowMatchEulerDiscreteScheduler

from graftbench.sampling.diffusion import gaussian_log_prob, posterior_std, sample_diffusion
from graftbench.sampling.flow import solve_flow

SHAPE = (3, 2, 4)  # (batch, ...): tiny, so every test runs in milliseconds
NUM_STEPS = 5


def eps_model(x, t):
    """A stand-in epsilon-network that depends on both x and t."""
    return 0.1 * x * (1 + t.view(-1, 1, 1) / 1000)


def _x(seed=0):
    return torch.randn(SHAPE, generator=torch.Generator().manual_seed(seed))


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _run(sched, x=None, seed=0, generator=None, **kw):
    """sample_diffusion with the test defaults: eps_model, NUM_STEPS steps, a seeded generator."""
    kw.setdefault("num_steps", NUM_STEPS)
    gen = _gen(seed) if generator is None else generator
    return sample_diffusion(eps_model, sched, _x() if x is None else x, generator=gen, **kw)


def _abar(scheduler, t):
    # t < 0 is past the last step: DDIM uses final_alpha_cumprod (1 or abar_0), DDPM uses 1.
    if t < 0:
        return float(getattr(scheduler, "final_alpha_cumprod", torch.tensor(1.0)))
    return float(scheduler.alphas_cumprod[t].double())


def _x0(scheduler, x, t, t_prev):
    """(a_t, a_prev, eps, x0 = (x_t - sqrt(1 - a_t) eps) / sqrt(a_t)) in float64."""
    a_t, a_prev = _abar(scheduler, t), _abar(scheduler, t_prev)
    eps = eps_model(x, torch.full((x.shape[0],), float(t))).double()
    return a_t, a_prev, eps, (x.double() - math.sqrt(1 - a_t) * eps) / math.sqrt(a_t)


def _ddim_step(scheduler, x, t, t_prev, eta):
    """Mean and std of x_{t_prev} given x_t (Song et al. 2021, eqs. 12 and 16):
    sigma = eta sqrt((1 - a_prev) / (1 - a_t)) sqrt(1 - a_t / a_prev),
    mean = sqrt(a_prev) x0 + sqrt(1 - a_prev - sigma^2) eps."""
    a_t, a_prev, eps, x0 = _x0(scheduler, x, t, t_prev)
    std = eta * math.sqrt((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev))
    return math.sqrt(a_prev) * x0 + math.sqrt(1 - a_prev - std**2) * eps, std


def _ddpm_step(scheduler, x, t, t_prev):
    """Posterior q(x_prev | x_t, x0) with the strided beta_t = 1 - a_t / a_prev (Ho et al. eq. 7):
    mean = sqrt(a_prev) beta_t / (1 - a_t) x0 + sqrt(1 - beta_t) (1 - a_prev) / (1 - a_t) x_t,
    std = sqrt(beta_tilde) = sqrt((1 - a_prev) / (1 - a_t) beta_t)."""
    a_t, a_prev = _abar(scheduler, t), _abar(scheduler, t_prev)
    beta = 1 - a_t / a_prev
    eps = eps_model(x, torch.full((x.shape[0],), float(t))).double()
    x0 = (x.double() - math.sqrt(1 - a_t) * eps) / math.sqrt(a_t)
    mean = math.sqrt(a_prev) * beta / (1 - a_t) * x0
    mean = mean + math.sqrt(1 - beta) * (1 - a_prev) / (1 - a_t) * x.double()
    return mean, math.sqrt((1 - a_prev) / (1 - a_t) * beta)


def _next_timestep(ts, i):
    """DDPMScheduler.previous_timestep: the next entry of `timesteps`, -1 after the last."""
    return ts[i + 1] if i + 1 < len(ts) else -1


def _ddim_prev(ts, i):
    """diffusers' DDIM always steps to t - T // N, even where `timesteps` says otherwise
    (trailing spacing with N = 3: 666 -> 333, while timesteps go 666 -> 332)."""
    return ts[i] - 1000 // len(ts)


def _expected_log_probs(traj, step, prev=_next_timestep):
    """log N(x_{i+1}; mean_i, std_i^2 I) summed over dims, for every step with std_i > 0."""
    ts = [int(t) for t in traj.timesteps]
    out = []
    for i, t in enumerate(ts):
        mean, std = step(t, prev(ts, i), traj.states[i])
        nxt = traj.states[i + 1].double()
        if std == 0.0:
            torch.testing.assert_close(nxt, mean, rtol=1e-6, atol=1e-5)  # deterministic step
            continue
        out.append(torch.distributions.Normal(mean, std).log_prob(nxt).flatten(1).sum(1))
    return torch.stack(out, 1)


def test_ddim_eta0_is_deterministic():
    sched = DDIMScheduler(clip_sample=False)
    a, b = _run(sched, seed=1), _run(sched, seed=2)
    assert torch.equal(a.sample, b.sample)
    assert a.log_probs is None and b.log_probs is None
    assert a.nfe == NUM_STEPS and len(a.timesteps) == NUM_STEPS
    # ...and it is the eta = 0 closed form.
    mean, std = _ddim_step(sched, _x(), int(a.timesteps[0]), int(a.timesteps[1]), 0.0)
    assert std == 0.0
    torch.testing.assert_close(a.states[1].double(), mean, rtol=0, atol=1e-5)


DDIM_CONFIGS = {
    "sd": dict(steps_offset=1, set_alpha_to_one=False),  # Stable Diffusion's DDIM config
    "trailing": dict(timestep_spacing="trailing", set_alpha_to_one=False),
    "default": dict(),
    "no_alpha_one": dict(set_alpha_to_one=False),
}


@pytest.mark.parametrize("eta", [0.5, 1.0])
@pytest.mark.parametrize(
    "config",
    # default/no_alpha_one end on a step that adds no noise: it must get no log-prob column
    ["sd", "trailing", "default", "no_alpha_one"],
)
def test_ddim_log_probs_match_gaussian_density(eta, config):
    sched = DDIMScheduler(clip_sample=False, **DDIM_CONFIGS[config])
    traj = _run(sched, eta=eta)
    assert sorted(traj.states) == list(range(NUM_STEPS + 1))  # keep=None keeps every state
    step = lambda t, tp, x: _ddim_step(sched, x, t, tp, eta)  # noqa: E731
    expected = _expected_log_probs(traj, step, prev=_ddim_prev)
    assert traj.log_probs.shape == expected.shape
    torch.testing.assert_close(traj.log_probs.double(), expected, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
def test_ddpm_log_probs_match_gaussian_density(spacing):
    sched = DDPMScheduler(clip_sample=False, timestep_spacing=spacing)
    traj = _run(sched)
    expected = _expected_log_probs(traj, lambda t, tp, x: _ddpm_step(sched, x, t, tp))
    # The last step lands on abar = 1 and adds no noise, so it has no log-prob column.
    assert expected.shape == (SHAPE[0], NUM_STEPS - 1)
    assert traj.log_probs.shape == expected.shape
    torch.testing.assert_close(traj.log_probs.double(), expected, rtol=1e-4, atol=1e-3)


def test_gaussian_log_prob_resolves_image_sized_sums():
    """A 3x32x32 step with a small std sums to ~2e4; PPO needs differences of ~1e-4 in it,
    below float32's resolution there (2^-10). Against float64 torch.distributions."""
    g = _gen(0)
    mean = torch.randn(4, 3, 32, 32, generator=g)
    x = mean + 1e-3 * torch.randn(4, 3, 32, 32, generator=g)
    got = gaussian_log_prob(x, mean, 1e-3)
    assert got.dtype == torch.float64 and got.abs().min() > 1.5e4
    want = torch.distributions.Normal(mean.double(), 1e-3).log_prob(x.double()).flatten(1).sum(1)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-7)


def test_ddim_eta1_std_is_ddpm_posterior_std():
    ddim = DDIMScheduler(set_alpha_to_one=False)
    ddpm = DDPMScheduler()
    for s in (ddim, ddpm):
        s.set_timesteps(10)
    stride = 1000 // 10
    for t in ddim.timesteps.tolist()[:-1]:  # DDPM's last step is noiseless by construction
        a_t, a_prev = _abar(ddim, t), _abar(ddim, t - stride)
        beta_tilde = (1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)
        assert posterior_std(ddim, t, 1.0) == pytest.approx(math.sqrt(beta_tilde), rel=1e-6)
        assert posterior_std(ddpm, t, 1.0) == pytest.approx(math.sqrt(beta_tilde), rel=1e-6)
        # diffusers' own DDPM "fixed_small" variance, as a third opinion.
        assert posterior_std(ddim, t, 1.0) == pytest.approx(
            float(ddpm._get_variance(t)) ** 0.5, rel=1e-5
        )
        assert posterior_std(ddim, t, 0.5) == pytest.approx(0.5 * math.sqrt(beta_tilde), rel=1e-6)


@pytest.mark.parametrize("shift", [1.0, 3.0])
def test_flow_scheduler_path_is_solve_flow(shift):
    def denoise(x, t):  # a velocity that depends non-linearly on x and t
        return torch.tanh(x) - torch.sin(t / 1000).view(-1, 1, 1) * x

    sched = FlowMatchEulerDiscreteScheduler(shift=shift)
    traj = sample_diffusion(denoise, sched, _x(), num_steps=6, generator=_gen(0))
    expected, nfe = solve_flow(lambda x, s: denoise(x, 1000 * s), _x(), sched.sigmas)
    torch.testing.assert_close(traj.sample, expected, rtol=1e-6, atol=1e-6)
    assert traj.log_probs is None and traj.nfe == nfe == 6


SCHEDULERS = {
    "ddim_eta0": (lambda: DDIMScheduler(clip_sample=False), 0.0),
    "ddim_eta1": (lambda: DDIMScheduler(clip_sample=False, **DDIM_CONFIGS["sd"]), 1.0),
    "ddpm": (lambda: DDPMScheduler(clip_sample=False), 0.0),
    "flow": (lambda: FlowMatchEulerDiscreteScheduler(shift=3.0), 0.0),
}


@pytest.mark.parametrize("name", sorted(SCHEDULERS))
@pytest.mark.parametrize("k", [1, 3])
def test_split_run_equals_full_run(name, k):
    make, eta = SCHEDULERS[name]
    full = _run(make(), seed=7, eta=eta)
    sched, gen = make(), _gen(7)  # one scheduler object and one generator for both halves
    first = _run(sched, generator=gen, eta=eta, stop_step=k)
    second = _run(sched, first.sample, generator=gen, eta=eta, start_step=k)
    torch.testing.assert_close(second.sample, full.sample, rtol=0, atol=1e-6)
    assert sorted(first.states) == list(range(k + 1))
    assert sorted(second.states) == list(range(k, NUM_STEPS + 1))
    assert torch.equal(torch.cat([first.timesteps, second.timesteps]), full.timesteps)
    assert first.nfe + second.nfe == full.nfe == NUM_STEPS
    if full.log_probs is not None:
        both = torch.cat([first.log_probs, second.log_probs], 1)
        torch.testing.assert_close(both, full.log_probs)


@pytest.mark.parametrize("keep", [[], [0], [2, NUM_STEPS], [0, 1, 4]])
def test_states_hold_exactly_the_kept_indices(keep):
    sched = DDIMScheduler(clip_sample=False)
    every, some = _run(sched), _run(sched, keep=keep)
    assert sorted(some.states) == sorted(keep)
    for i in keep:
        assert torch.equal(some.states[i], every.states[i])
    assert torch.equal(every.states[0], _x()) and torch.equal(every.states[NUM_STEPS], every.sample)
    # A partial run keeps only the requested indices inside [start_step, stop_step].
    part = _run(sched, every.states[1], keep=keep, start_step=1, stop_step=4)
    assert sorted(part.states) == [i for i in keep if 1 <= i <= 4]
