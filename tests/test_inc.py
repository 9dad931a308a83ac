"""Inverse noise correction on a 2-D toy where every law is Gaussian and known in closed form,
and the inversion's per-sample stopping rule."""

import math

import numpy as np
import pytest
import scipy.stats
import torch

from graftbench.methods.inc import (
    CorrectorTrainConfig,
    InversionConfig,
    corrector_loss,
    energy_distance,
    invert_data,
    noise_diagnostics,
    sample,
)
from graftbench.sampling.flow import flow_sigmas, invert_euler, solve_flow
from graftbench.train import fit

DATA_MEAN = torch.tensor([1.0, -0.5], dtype=torch.float64)
DATA_STD = torch.tensor([0.5, 1.5], dtype=torch.float64)


def _gaussian_velocity(mean, std):
    """The exact rectified-flow velocity E[eps - x0 | x_sigma] for data N(mean, diag(std^2)):
    x_sigma = (1 - sigma) x0 + sigma eps is Gaussian with variance (1 - sigma)^2 std^2 + sigma^2,
    and both conditional means are linear in x_sigma (Gaussian conditioning)."""

    def velocity(x, sigma):
        s = sigma.to(x.dtype)[:, None]
        var = (1 - s) ** 2 * std**2 + s**2
        centred = x - (1 - s) * mean
        e_x0 = mean + (1 - s) * std**2 / var * centred
        e_eps = s / var * centred
        return e_eps - e_x0

    return velocity


def _data(n, seed):
    g = torch.Generator().manual_seed(seed)
    return DATA_MEAN + DATA_STD * torch.randn(n, 2, generator=g, dtype=torch.float64)


def _gaussian_w2(x):
    """Wasserstein-2 between N(mean(x), cov(x)) and the data law N(DATA_MEAN, diag(DATA_STD^2))
    (Dowson & Landau 1982; with a diagonal target the cross term is a symmetric sqrtm)."""
    x = x.double().numpy()
    mu, cov = x.mean(0), np.cov(x.T)
    s2 = np.diag(DATA_STD.numpy())  # sqrt of the target covariance
    cross = scipy.linalg.sqrtm(s2 @ cov @ s2).real
    trace = np.trace(cov) + (DATA_STD.numpy() ** 2).sum() - 2 * np.trace(cross)
    return math.sqrt(((mu - DATA_MEAN.numpy()) ** 2).sum() + max(trace, 0.0))


class _MLP(torch.nn.Module):
    def __init__(self, hidden=64):
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(3, hidden),
            torch.nn.SiLU(),
            torch.nn.Linear(hidden, hidden),
            torch.nn.SiLU(),
            torch.nn.Linear(hidden, 2),
        )

    def forward(self, x, t):  # t in diffusers' flow units, 1000 * sigma
        return self.net(torch.cat([x, (t / 1000).to(x.dtype)[:, None]], 1))


def test_exact_velocity_reproduces_the_data_law():
    # Sanity check of the toy itself: with the true velocity and many steps, N(0, I) maps to
    # the data law, so the biased model below is what makes the base sampler wrong.
    z = torch.randn(20000, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x, _ = solve_flow(_gaussian_velocity(DATA_MEAN, DATA_STD), z, flow_sigmas(200).double())
    assert _gaussian_w2(x) < 0.03


def test_inc_moves_a_biased_model_towards_the_data_law():
    # The "pre-trained" velocity is exact for the wrong law (a learning error), and 4 Euler
    # steps add a discretisation error; INC sees only data samples and that velocity.
    base = _gaussian_velocity(
        torch.tensor([0.4, 0.3], dtype=torch.float64), torch.tensor([0.9, 0.8], dtype=torch.float64)
    )
    sigmas = flow_sigmas(4).double()
    g = torch.Generator().manual_seed(1)
    inverted = invert_data(
        base,
        _data(4000, seed=2),
        sigmas,
        InversionConfig(batch_size=1000, max_iters=100, tol=1e-10),
        g,
    )
    assert inverted.recon_max < 1e-8  # |h| Lip(v) < 1 here, so the inversion is exact

    torch.manual_seed(0)
    corrector = _MLP().double()
    cfg = CorrectorTrainConfig(
        steps=1500,
        batch_size=256,
        lr=3e-3,
        warmup=50,
        ema_decay=0.99,
        checkpoint_every=10**6,
        sigma_sampling="uniform",
    )
    loss = corrector_loss(corrector, inverted.noise, cfg.batch_size, cfg.sigma_sampling)
    ema = _fit_in_tmp(corrector, loss, cfg)

    def corrected(x, sigma):
        return ema(x, 1000 * sigma)

    eps = torch.randn(20000, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    x_base, nfe_c0, nfe_b = sample(None, base, eps, None, sigmas)
    x_inc, nfe_c, _ = sample(corrected, base, eps, flow_sigmas(8).double(), sigmas)
    assert (nfe_c0, nfe_b, nfe_c) == (0, 4, 8)
    before, after = _gaussian_w2(x_base), _gaussian_w2(x_inc)
    assert before > 0.5, before  # the bias is large ...
    assert after < 0.25 * before, (before, after)  # ... and INC removes most of it
    # The same verdict from a distance that assumes nothing Gaussian: per-axis W1 against
    # fresh data samples (scipy's one-dimensional Wasserstein distance).
    ref = _data(20000, seed=4).numpy()
    w1 = [
        [scipy.stats.wasserstein_distance(x[:, d].numpy(), ref[:, d]) for d in range(2)]
        for x in (x_base, x_inc)
    ]
    assert all(a < 0.5 * b for a, b in zip(w1[1], w1[0], strict=True)), w1


def _fit_in_tmp(network, loss, cfg):
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        return fit(network, loss, cfg, f"{tmp}/corrector.pt", {}, kind="test")


def test_inverted_noise_law_matches_closed_form():
    # Euler steps of a Gaussian velocity are affine maps, so T(z) = A z + b, read off by
    # pushing the basis vectors through the sampler; the inverted noise of data
    # N(m, S) must then have mean A^-1 (m - b) and covariance A^-1 S A^-T. (One step alone
    # would collapse everything onto the mean, since v(z, 1) = z - mean: hence two steps.)
    base = _gaussian_velocity(
        torch.zeros(2, dtype=torch.float64), torch.full((2,), 0.7, dtype=torch.float64)
    )
    sigmas = flow_sigmas(2).double()
    e = torch.eye(2, dtype=torch.float64)
    shift, _ = solve_flow(base, torch.zeros(1, 2, dtype=torch.float64), sigmas)
    cols, _ = solve_flow(base, e, sigmas)
    a = (cols - shift).T  # T(z) = a z + shift, read off the basis vectors
    x = _data(40000, seed=5)
    inv = invert_data(
        base,
        x,
        sigmas,
        InversionConfig(batch_size=10000, max_iters=200, tol=1e-12),
        torch.Generator().manual_seed(0),
    )
    a_inv = torch.linalg.inv(a)
    want_mean = a_inv @ (DATA_MEAN - shift[0])
    want_cov = a_inv @ torch.diag(DATA_STD**2) @ a_inv.T
    torch.testing.assert_close(inv.noise.mean(0), want_mean, atol=0.03, rtol=0)
    torch.testing.assert_close(torch.cov(inv.noise.T), want_cov, atol=0.06, rtol=0.03)


def test_energy_distance_matches_closed_form_for_shifted_gaussians():
    # X ~ N(0, 1), Y ~ N(mu, 1): E|X - Y| = E|N(mu, 2)| and E|X - X'| = E|N(0, 2)| = 2 / sqrt(pi),
    # with E|N(m, s^2)| = s sqrt(2 / pi) exp(-m^2 / 2 s^2) + m (1 - 2 Phi(-m / s)).
    def abs_mean(m, s):
        return s * math.sqrt(2 / math.pi) * math.exp(-(m**2) / (2 * s**2)) + m * (
            1 - 2 * scipy.stats.norm.cdf(-m / s)
        )

    g = torch.Generator().manual_seed(0)
    for mu in (0.0, 0.5, 2.0):
        a = torch.randn(3000, 1, generator=g, dtype=torch.float64)
        b = mu + torch.randn(3000, 1, generator=g, dtype=torch.float64)
        want = 2 * abs_mean(mu, math.sqrt(2)) - 2 * abs_mean(0.0, math.sqrt(2))
        # sampling sd of the estimate at n = 3000 is ~0.02 at mu = 0 and ~0.05 at mu = 2
        assert energy_distance(a, b) == pytest.approx(want, abs=0.04 + 0.05 * mu)


def test_noise_diagnostics_tell_gaussian_from_not():
    g = torch.Generator().manual_seed(0)
    gauss = torch.randn(2000, 4, 4, generator=g)
    skewed = 0.3 + 1.5 * torch.randn(2000, 4, 4, generator=g).abs()
    ok, bad = noise_diagnostics(gauss, g), noise_diagnostics(skewed, g, corrected=gauss)
    assert ok["mean_abs_mean"] < 0.1 and ok["mean_abs_std_minus_1"] < 0.1
    assert abs(ok["energy_before"]) < 5 * max(abs(ok["energy_null"]), 0.01)
    assert bad["mean_abs_mean"] > 1 and bad["energy_before"] > 10 * abs(bad["energy_null"])
    assert bad["energy_after"] == pytest.approx(bad["energy_before"], rel=0.2)


def test_inversion_stops_each_sample_on_its_own():
    # v = -0.5 x contracts every row at the same rate, so a row's iteration count grows with
    # its size (the tolerance is absolute): each row must get the answer it gets alone, and
    # the batch pays per row, not the slowest row's count for all.
    def velocity(z, s):
        return -0.5 * z

    sigmas = torch.linspace(1.0, 0.0, 4, dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 2, generator=g, dtype=torch.float64) * torch.tensor([[1e-9], [1.0], [1e6]])
    res = invert_euler(velocity, x, sigmas, max_iters=500, tol=1e-10)
    alone = [invert_euler(velocity, x[[i]], sigmas, max_iters=500, tol=1e-10) for i in range(3)]
    for i, one in enumerate(alone):
        torch.testing.assert_close(res.noise[i], one.noise[0], rtol=1e-12, atol=0)
    assert alone[0].nfe < alone[1].nfe < alone[2].nfe
    assert res.nfe == pytest.approx(sum(one.nfe for one in alone) / 3)
    assert res.nfe < res.iterations.sum().item()


def test_inversion_keeps_its_best_iterate_when_it_cannot_converge():
    # |h| Lip = 3 > 1: the fixed-point iteration runs away from the preimage. The returned
    # iterate must be the one with the smallest residual (the starting point here), not the
    # last one, whose residual has grown by 3^iterations.
    def velocity(z, s):
        return 6.0 * z

    sigmas = torch.tensor([1.0, 0.5], dtype=torch.float64)
    x = torch.ones(1, 2, dtype=torch.float64)
    res = invert_euler(velocity, x, sigmas, max_iters=10, tol=1e-12)
    assert res.iterations.tolist() == [10]
    start_residual = 0.5 * 6.0  # |F(x) - x| = |h| |v(x)| at the start g = x
    assert res.residual.item() == pytest.approx(start_residual)
    torch.testing.assert_close(res.noise, x)


def _quadratic(target: float):
    """A one-parameter network and a noisy loss (w - target)^2 + noise, for fit's early stop."""
    net = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.zeros_(net.weight)

    def loss(step, g):
        return (net.weight.sum() - target) ** 2 + 0 * torch.randn(1, generator=g).sum()

    return net, loss


def test_fit_without_validation_is_unchanged_by_the_validation_code(tmp_path):
    """Held-out scoring only reads the EMA (its own noise, none of training's RNG), so the
    EMA it returns after the same steps equals a plain fit's."""
    from graftbench.train import TrainConfig, Validation

    cfg = TrainConfig(steps=60, warmup=5, lr=0.05, ema_decay=0.9, checkpoint_every=1000)
    torch.manual_seed(0)
    plain = fit(*_quadratic(2.0), cfg, tmp_path / "a.pt", {}, kind="test")
    val = Validation(loss=lambda net: float((net.weight.sum() - 2.0) ** 2), every=10)
    torch.manual_seed(0)
    scored = fit(*_quadratic(2.0), cfg, tmp_path / "b.pt", {}, validation=val, kind="test")
    # no patience: trains all steps; the best evaluation is the last (the loss only falls)
    assert val.best["step"] == 60 and "stopped_at" not in val.best
    assert torch.equal(plain.weight, scored.weight)


def test_fit_stops_when_the_heldout_loss_stops_falling_and_keeps_the_best(tmp_path):
    """A held-out optimum at w = 1 while training drives w towards 3: the held-out loss falls
    until w passes 1, then rises; fit stops `patience` evaluations after the best and returns
    (and saves) the EMA from that best evaluation, logging every evaluation."""
    from graftbench import records
    from graftbench.train import TrainConfig, Validation

    cfg = TrainConfig(steps=2000, warmup=1, lr=0.02, ema_decay=0.0, checkpoint_every=30)
    log = tmp_path / "heldout.jsonl"
    val = Validation(
        loss=lambda net: float((net.weight.sum() - 1.0) ** 2), every=5, patience=3, log=log
    )
    torch.manual_seed(0)
    ema = fit(*_quadratic(3.0), cfg, tmp_path / "c.pt", {}, validation=val, kind="test")
    curve = records.read_jsonl(log)
    held = [r["heldout_loss"] for r in curve]
    best = min(range(len(held)), key=held.__getitem__)
    assert val.best["step"] == curve[best]["step"] and val.best["loss"] == held[best]
    assert val.best["stopped_at"] == curve[-1]["step"] == curve[best]["step"] + 3 * 5
    assert val.best["stopped_at"] < cfg.steps
    assert abs(ema.weight.item() - 1.0) ** 2 == pytest.approx(held[best])
    saved = records.load_checkpoint(tmp_path / "c.pt", "test")
    assert saved["steps"] == val.best["step"]
    assert torch.equal(saved["model"]["weight"], ema.weight.detach())
    assert all({"train_loss", "heldout_loss", "best_step", "lr"} <= r.keys() for r in curve)


def test_heldout_loss_repeats_its_draws_and_is_the_training_loss_in_expectation():
    """The same weights score the same at every call; averaged over many draws the held-out
    loss equals the training loss's expectation (here a velocity of 0: E|eps - z|^2 = 1 + |z|^2
    per dimension with the path's target eps - z)."""
    from graftbench.methods.inc import heldout_loss

    z = torch.full((50, 3), 0.5)

    def zero(x, t):
        return torch.zeros_like(x)

    a = heldout_loss(zero, z, 400, 1000, "logit_normal", seed=1)
    assert a == heldout_loss(zero, z, 400, 1000, "logit_normal", seed=1)
    assert a == pytest.approx(1 + 0.25, rel=0.02)


def test_the_paper_recipe_override_changes_only_inc_and_the_base_steps():
    """config/inc_paper_recipe.yaml, merged as Snakemake merges a --configfile, parses against
    the unconditional config and leaves pre-training, data and features as the cpu profile."""
    import yaml
    from snakemake.utils import update_config

    from graftbench.config import to_dict
    from graftbench.spec import resolve
    from tests.conftest import ROOT, workflow_config

    config = workflow_config("cpu")
    update_config(config, yaml.safe_load((ROOT / "config/inc_paper_recipe.yaml").read_text()))
    got = to_dict(resolve(config, "unconditional"))
    cpu = to_dict(resolve(workflow_config("cpu"), "unconditional"))
    assert got["inc"]["invert"]["n_images"] == 0 and got["inc"]["invert"]["perturb"] == 0.001
    assert got["inc"]["train"]["eval_every"] > 0 and got["inc"]["train"]["patience"] > 0
    assert set(got["inc"]["base_steps"]) <= set(got["sample"]["steps"])
    for key in ("data", "model", "pretrain", "features", "evaluate", "seeds", "methods"):
        assert got[key] == cpu[key], key
    assert {k: v for k, v in got["sample"].items() if k != "steps"} == {
        k: v for k, v in cpu["sample"].items() if k != "steps"
    }
