"""Flow ODE solver and its Euler inverse against closed forms (graftbench/sampling/flow.py).

Each expected value is re-derived here by hand (torchcfm-style), never by calling the code
under test a second way.
"""

import math

import numpy as np
import pytest
import torch

from graftbench.sampling.flow import flow_sigmas, invert_euler, solve_flow

# --- solve_flow ---------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["euler", "heun"])
@pytest.mark.parametrize("shift", [1.0, 3.0])
def test_straight_line_field_is_integrated_exactly(method, shift):
    # Conditional OT path towards a point mass a: x_s = (1 - s) a + s z, so
    # dx/ds = z - a = (x_s - a) / s. One Euler step maps x_k - a to (s_{k+1}/s_k)(x_k - a),
    # which is the exact flow, so every grid state is exact (Heun's corrector sees the same
    # velocity at both ends and changes nothing).
    gen = torch.Generator().manual_seed(0)
    a, z = torch.randn(2, 4, 3, generator=gen, dtype=torch.float64)
    sigmas = flow_sigmas(7, shift=shift).double()

    def velocity(x, s):
        return (x - a) / s[:, None]

    for k in range(1, len(sigmas)):
        x, _ = solve_flow(velocity, z, sigmas[: k + 1], method=method)
        torch.testing.assert_close(x, (1 - sigmas[k]) * a + sigmas[k] * z, rtol=0, atol=1e-12)
    _, nfe = solve_flow(velocity, z, sigmas, method=method)
    # Heun spends 2 NFE per step except the last one, which lands on sigma = 0 (Euler).
    assert nfe == (7 if method == "euler" else 2 * 7 - 1)


# (velocity, x(0) as a function of x(1)): dx/ds = 3 s^2 gives x(0) = x(1) - 1 (the
# flow_matching test); dx/ds = 3 s^2 x gives x(s) = x(1) exp(s^3 - 1), so x(0) = x(1) / e.
FIELDS = {
    "3s^2": (lambda x, s: 3 * s[:, None] ** 2 * torch.ones_like(x), lambda x1: x1 - 1),
    "3s^2*x": (lambda x, s: 3 * s[:, None] ** 2 * x, lambda x1: x1 * math.exp(-1)),
}


@pytest.mark.parametrize("field", sorted(FIELDS))
@pytest.mark.parametrize("method, order", [("euler", 1), ("heun", 2)])
def test_convergence_order(field, method, order):
    velocity, exact = FIELDS[field]
    x1 = torch.tensor([[0.5, -1.0, 2.0]], dtype=torch.float64)
    # Fine grids: for 3 s^2 x Heun's O(h^3) term (largely from the Euler last step) has a
    # large constant and opposite sign, so coarse grids (n <= 32) are pre-asymptotic.
    steps = np.array([64, 128, 256, 512])
    errors = []
    for n in steps:
        sigmas = torch.linspace(1.0, 0.0, int(n) + 1, dtype=torch.float64)
        x0, _ = solve_flow(velocity, x1, sigmas, method=method)
        errors.append((x0 - exact(x1)).abs().max().item())
    # Global error ~ C h^p: the slope of log(error) against log(h) is the order p.
    slope = np.polyfit(np.log(1.0 / steps), np.log(errors), 1)[0]
    assert abs(slope - order) < 0.1, (slope, errors)


def test_unknown_method_is_rejected():
    with pytest.raises(ValueError, match="'euler', 'heun'"):
        solve_flow(lambda x, s: x, torch.zeros(1, 2), flow_sigmas(2), method="rk4")


# --- invert_euler ---------------------------------------------------------------------------


def _linear_field(lipschitz_times_h: float, num_steps: int, dim: int = 4, seed: int = 0):
    """v(x) = A x with ||A||_2 chosen so that |h| ||A||_2 = lipschitz_times_h on a uniform grid."""
    gen = torch.Generator().manual_seed(seed)
    a = torch.randn(dim, dim, generator=gen, dtype=torch.float64)
    a = a / torch.linalg.matrix_norm(a, ord=2) * lipschitz_times_h * num_steps
    return a, lambda x, s: x @ a.T


def _exact_backward_euler(a, x_last, sigmas):
    """x_k = (I + h_k A)^{-1} x_{k+1}: the exact preimage of each forward Euler step."""
    x = x_last
    eye = torch.eye(a.shape[0], dtype=a.dtype)
    for k in reversed(range(len(sigmas) - 1)):
        h = sigmas[k + 1] - sigmas[k]
        x = torch.linalg.solve(eye + h * a, x.T).T
    return x


@pytest.mark.parametrize("q", [0.1, 0.5, 0.9])
def test_inversion_of_linear_field_matches_linear_solve(q):
    n = 6
    a, velocity = _linear_field(q, n)
    sigmas = torch.linspace(1.0, 0.0, n + 1, dtype=torch.float64)
    x0 = torch.randn(3, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    res = invert_euler(velocity, x0, sigmas, max_iters=500, tol=1e-13)
    assert (res.iterations < 500).all()  # converged: |h| Lip(v) = q < 1 (Banach)
    assert res.residual.max() < 1e-11
    torch.testing.assert_close(res.noise, _exact_backward_euler(a, x0, sigmas), rtol=0, atol=1e-10)
    # Each sample stops on its own, so it costs between one and the batch maximum per step.
    assert n <= res.nfe <= int(res.iterations.sum())


def test_slower_contraction_needs_more_iterations():
    sigmas = torch.linspace(1.0, 0.0, 5, dtype=torch.float64)
    x0 = torch.randn(2, 4, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    used = [
        invert_euler(_linear_field(q, 4)[1], x0, sigmas, max_iters=500, tol=1e-12).iterations
        for q in (0.1, 0.5, 0.9)
    ]
    assert (used[0] < used[1]).all() and (used[1] < used[2]).all()


def test_inversion_diverges_when_contraction_fails():
    # |h| ||A|| = 5: the fixed-point map x -> x_{k+1} - h A x expands, although
    # (I + h A) = -4 I is invertible, so the backward step itself is well defined.
    n, max_iters = 2, 10
    a = 10.0 * torch.eye(3, dtype=torch.float64)
    sigmas = torch.linspace(1.0, 0.0, n + 1, dtype=torch.float64)
    x0 = torch.randn(2, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    res = invert_euler(lambda x, s: x @ a.T, x0, sigmas, max_iters=max_iters, tol=1e-8)
    assert (res.iterations == max_iters).all()
    assert res.residual.min() > 1.0
    assert not torch.allclose(res.noise, _exact_backward_euler(a, x0, sigmas), atol=1e-3)


def _small_mlp(dim=3, hidden=16, lipschitz=0.8, seed=0):
    """v(x, s) = W2 tanh(W1 x + s c + b); tanh is 1-Lipschitz, so Lip_x(v) <= ||W2|| ||W1||."""
    gen = torch.Generator().manual_seed(seed)
    w1 = torch.randn(hidden, dim, generator=gen, dtype=torch.float64)
    w2 = torch.randn(dim, hidden, generator=gen, dtype=torch.float64)
    w1 = w1 / torch.linalg.matrix_norm(w1, ord=2)
    w2 = w2 / torch.linalg.matrix_norm(w2, ord=2) * lipschitz
    b, c = torch.randn(2, hidden, generator=gen, dtype=torch.float64)

    def velocity(x, s):
        return torch.tanh(x @ w1.T + s[:, None] * c + b) @ w2.T

    return velocity, lipschitz


@pytest.mark.parametrize("shift", [1.0, 3.0])
def test_inverse_then_forward_returns_input(shift):
    velocity, lip = _small_mlp()
    sigmas = flow_sigmas(10, shift=shift).double()
    x0 = torch.randn(5, 3, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    res = invert_euler(velocity, x0, sigmas, max_iters=200, tol=1e-12)
    back, _ = solve_flow(velocity, res.noise, sigmas)
    # Step k misses its target by r_k (sup norm, so <= sqrt(d) r_k in 2-norm), and the
    # forward map amplifies earlier misses by at most prod(1 + |h| L) <= exp(L sum|h|) = e^L.
    dim = x0.shape[1]
    bound = math.sqrt(dim) * res.residual.sum().item() * math.exp(lip) + 1e-13
    assert res.residual.max() < 1e-10
    assert (back - x0).abs().max().item() <= bound


def test_forward_then_inverse_returns_noise():
    velocity, _ = _small_mlp(seed=1)
    sigmas = flow_sigmas(8).double()
    z = torch.randn(5, 3, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    x0, _ = solve_flow(velocity, z, sigmas)
    res = invert_euler(velocity, x0, sigmas, max_iters=200, tol=1e-12)
    torch.testing.assert_close(res.noise, z, rtol=0, atol=1e-9)


# --- flow_sigmas -----------------------------------------------------------------------------


@pytest.mark.parametrize("shift", [0.5, 1.0, 3.0])
@pytest.mark.parametrize("num_steps", [1, 4, 28])
def test_flow_sigmas_endpoints_and_monotone(num_steps, shift):
    s = flow_sigmas(num_steps, shift=shift)
    assert s.shape == (num_steps + 1,) and s.dtype == torch.float32
    assert s[0].item() == 1.0 and s[-1].item() == 0.0
    assert (s[1:] < s[:-1]).all()


@pytest.mark.parametrize("shift", [0.5, 3.0])
def test_shift_scales_the_odds(shift):
    # Esser et al. 2024's shift multiplies sigma / (1 - sigma) by `shift`, which is the same
    # as moving log-SNR by -2 log(shift); check it on the interior points.
    base, shifted = flow_sigmas(10).double()[1:-1], flow_sigmas(10, shift=shift).double()[1:-1]
    odds = shifted / (1 - shifted)
    torch.testing.assert_close(odds, shift * base / (1 - base), rtol=1e-6, atol=0)


def test_shift_above_one_spends_more_steps_at_high_noise():
    n = 20
    counts = {k: int((flow_sigmas(n, shift=k) > 0.5).sum()) for k in (0.5, 1.0, 3.0)}
    assert counts[0.5] < counts[1.0] < counts[3.0]
    # sigma' > 1/2 <=> s > 1 / (1 + shift) for the uniform s_i = 1 - i / n.
    assert counts[3.0] == sum(1 - i / n > 1 / 4 for i in range(n + 1))
