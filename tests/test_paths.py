"""Training targets against closed-form scores on Gaussian data.

For data x0 ~ N(mu, s^2) the DDPM marginal is x_t ~ N(sqrt(abar_t) mu, abar_t s^2 + 1 - abar_t),
so the ideal epsilon model is eps*(x_t) = -sqrt(1 - abar_t) * score_t(x_t)
= sqrt(1 - abar_t) (x_t - sqrt(abar_t) mu) / (abar_t s^2 + 1 - abar_t): linear in x_t. A target is
right iff its regression on x_t (least squares, which recovers E[target | x_t] here because
both are jointly Gaussian) equals that line.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler

from graftbench.paths import ddpm_from_intermediate, rectified_flow

MU, S = 1.5, 0.5
N = 400_000


def regress(x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Slope and intercept of the least-squares line y ~ a x + b."""
    a, b = np.polyfit(x.double().numpy(), y.double().numpy(), 1)
    return a, b


@pytest.mark.parametrize("t_i, t", [(200, 600), (500, 900), (50, 100)])
@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_pgraft_target_is_the_marginal_score(t_i, t, prediction_type):
    abar = DDPMScheduler().alphas_cumprod.double()
    g = torch.Generator().manual_seed(0)
    x0 = MU + S * torch.randn(N, generator=g, dtype=torch.float64)
    # x_I drawn from the true marginal at t_I, as the full reverse process would produce it
    x_i = abar[t_i].sqrt() * x0 + (1 - abar[t_i]).sqrt() * torch.randn(
        N, generator=g, dtype=torch.float64
    )
    noise = torch.randn(N, generator=g, dtype=torch.float64)
    pair = ddpm_from_intermediate(
        x_i, noise, torch.full((N,), t), torch.full((N,), t_i), abar, prediction_type
    )
    a, b = regress(pair.xt, pair.target)
    at = abar[t].item()
    var_t = at * S**2 + 1 - at
    eps_a, eps_b = np.sqrt(1 - at) / var_t, -np.sqrt(1 - at) * np.sqrt(at) * MU / var_t
    if prediction_type == "epsilon":
        want = (eps_a, eps_b)
    else:  # v* = (eps* - sqrt(1 - abar) x) / sqrt(abar)
        want = ((eps_a - np.sqrt(1 - at)) / np.sqrt(at), eps_b / np.sqrt(at))
    assert a == pytest.approx(want[0], abs=5e-3)
    assert b == pytest.approx(want[1], abs=5e-3)
    # the naive target (plain eps', the pre-training target with x_I as x_0) is wrong
    # wherever the two differ by more than sampling error (they converge as t_I -> 0 or t -> T)
    factor = np.sqrt((1 - at) / (1 - at / abar[t_i].item()))
    if prediction_type == "epsilon" and abs(factor - 1) > 0.05:
        a_naive, _ = regress(pair.xt, noise)
        assert abs(a_naive - want[0]) > 0.02


def test_pgraft_rejects_t_at_or_below_t_i():
    abar = DDPMScheduler().alphas_cumprod
    x = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="t > t_I"):
        ddpm_from_intermediate(x, x, torch.tensor([100, 300]), torch.tensor([100, 100]), abar)


def test_rectified_flow_target_is_the_marginal_velocity():
    """x_s = (1 - s) x0 + s z: the ideal velocity E[z - x0 | x_s] is linear in x_s for
    Gaussian data; the regression of the per-sample target must recover it."""
    g = torch.Generator().manual_seed(1)
    s = 0.3
    x0 = MU + S * torch.randn(N, generator=g, dtype=torch.float64)
    z = torch.randn(N, generator=g, dtype=torch.float64)
    pair = rectified_flow(x0, z, torch.full((N,), s, dtype=torch.float64))
    assert torch.allclose(pair.t, torch.full((N,), 1000 * s, dtype=torch.float64))
    var = (1 - s) ** 2 * S**2 + s**2
    cov_target_x = s - (1 - s) * S**2  # Cov(z - x0, (1 - s) x0 + s z)
    slope = cov_target_x / var
    intercept = -MU - slope * (1 - s) * MU
    a, b = regress(pair.xt, pair.target)
    assert a == pytest.approx(slope, abs=5e-3) and b == pytest.approx(intercept, abs=5e-3)


@pytest.mark.parametrize("t_i, t", [(500, 501), (200, 210), (500, 900)])
def test_pgraft_weight_makes_the_epsilon_target_unit_variance(t_i, t):
    """`losses.target_weight` is 1 / c(t)^2 for the epsilon target c(t) eps': weighted, the
    target's second moment is 1 at every t, however large c(t) grows next to t_I."""
    from graftbench.losses import target_weight

    abar = DDPMScheduler(beta_schedule="squaredcos_cap_v2").alphas_cumprod.double()
    g = torch.Generator().manual_seed(0)
    x_i, noise = (
        torch.randn(N, generator=g, dtype=torch.float64),
        torch.randn(N, generator=g, dtype=torch.float64),
    )
    tt = torch.full((N,), t)
    target = ddpm_from_intermediate(x_i, noise, tt, torch.full((N,), t_i), abar).target
    w = target_weight(abar, tt, t_i)
    assert (w * target**2).mean().item() == pytest.approx(1.0, abs=0.01)
    if t == t_i + 1:  # unweighted, the target right above t_I is two orders of magnitude larger
        assert (target**2).mean().item() > 50
