"""Flow ODE solver (Euler, Heun) and the exact inverse of its Euler map.

Convention (the one diffusers' FlowMatchEulerDiscreteScheduler uses): the path is
x_sigma = (1 - sigma) * x_data + sigma * noise, sigma from 1 (noise) to 0 (data), and the
model predicts the velocity v = dx/dsigma = noise - x_data. A step from sigma_k to
sigma_{k+1} < sigma_k is x_{k+1} = x_k + (sigma_{k+1} - sigma_k) * v(x_k, sigma_k).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

Velocity = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def flow_sigmas(num_steps: int, shift: float = 1.0, device=None) -> torch.Tensor:
    """(num_steps + 1,) sigmas from 1 to 0; `shift` > 1 spends more steps at high noise
    (the time shift of Esser et al. 2024, sigma' = shift * s / (1 + (shift - 1) * s))."""
    s = torch.linspace(1.0, 0.0, num_steps + 1, device=device, dtype=torch.float64)
    s = shift * s / (1 + (shift - 1) * s)
    return s.float()


@torch.no_grad()
def solve_flow(
    velocity: Velocity, x: torch.Tensor, sigmas: torch.Tensor, method: str = "euler"
) -> tuple[torch.Tensor, int]:
    """Integrate dx/dsigma = v(x, sigma) along `sigmas`; returns (x at sigmas[-1], NFE).

    x: (batch, ...) state at sigmas[0]. Heun (trapezoidal corrector, 2 NFE per step) falls
    back to Euler on a final step that lands on sigma = 0, as in Karras et al. 2022, alg. 1.
    """
    if method not in ("euler", "heun"):
        raise ValueError(f"method: {method!r} is not allowed; choose one of 'euler', 'heun'")
    # Step sizes as Python floats, read back once: the loop then never waits on the device (a
    # comparison such as `s_next > 0` on a CUDA tensor is a sync per step), and each update is
    # one fused pass, x + h * v, with no temporary for h * v. Tensors the velocity returns are
    # never written to: a callable may hand back its input or a tensor it keeps.
    grid = sigmas.tolist()
    nfe = 0
    batch = x.shape[0]
    for k in range(len(grid) - 1):
        h = grid[k + 1] - grid[k]
        v = velocity(x, sigmas[k].expand(batch))
        nfe += 1
        if method == "heun" and grid[k + 1] > 0:
            v_next = velocity(torch.add(x, v, alpha=h), sigmas[k + 1].expand(batch))
            nfe += 1
            x = torch.add(x, v + v_next, alpha=0.5 * h)
        else:
            x = torch.add(x, v, alpha=h)
    return x, nfe


@dataclass
class InversionResult:
    """noise:      (batch, ...) the state at sigmas[0] whose Euler trajectory ends at the input.
    iterations: (num_steps,) fixed-point iterations used by each step (max over the batch).
    residual:   (num_steps,) max over the batch of ||x_k + h v(x_k) - x_{k+1}||_inf per step,
                i.e. how far the forward Euler step from the solution misses its target.
    nfe:        network evaluations per sample (mean over the batch)."""

    noise: torch.Tensor
    iterations: torch.Tensor
    residual: torch.Tensor
    nfe: float


@torch.no_grad()
def invert_euler(
    velocity: Velocity,
    x0: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    max_iters: int = 50,
    tol: float = 1e-5,
) -> InversionResult:
    """Invert the discrete Euler map of `solve_flow` exactly (up to `tol`).

    Going backwards, each step solves x_k = x_{k+1} - h_k v(x_k, sigma_k) for x_k
    (h_k = sigma_{k+1} - sigma_k) by the fixed-point iteration g <- F(g) = x_{k+1} - h_k v(g),
    started from g = x_{k+1}. F is a contraction, so the iteration converges, when
    |h_k| * Lip(v) < 1 (Banach); this is the "backward Euler" inversion of the INC paper,
    which inverts the generator T itself rather than the ODE.

    The fixed-point residual of an iterate g is ||F(g) - g||_inf, which is exactly how far
    the forward Euler step from g misses x_{k+1}. Each sample stops iterating once its
    residual is below `tol` (so converged samples cost nothing more), and each step returns,
    per sample, the iterate with the smallest residual seen: where the iteration does not
    contract (near sigma = 0 the learned velocity can be steeper than 1 / |h_k|) it stops
    after `max_iters` at its best point instead of wherever it wandered.
    """
    x = x0
    steps = len(sigmas) - 1
    iterations = torch.zeros(steps, dtype=torch.long)
    residual = torch.zeros(steps)
    evaluations = 0
    for k in reversed(range(steps)):
        s, h = sigmas[k], (sigmas[k + 1] - sigmas[k]).item()
        target, guess = x, x.clone()
        best, best_res = (
            x.clone(),
            torch.full((len(x),), float("inf"), dtype=x.dtype, device=x.device),
        )
        active = torch.arange(len(x), device=x.device)
        for j in range(1, max_iters + 1):  # noqa: B007 (j is read after the loop)
            g = guess[active]
            new = torch.add(target[active], velocity(g, s.expand(len(g))), alpha=-h)
            evaluations += len(g)
            res = (new - g).flatten(1).abs().amax(1)
            better = res < best_res[active]
            best[active[better]] = g[better]
            best_res[active[better]] = res[better]
            guess[active] = new
            active = active[res >= tol]
            if len(active) == 0:
                break
        iterations[k] = j
        residual[k] = best_res.max()
        x = best
    return InversionResult(
        noise=x, iterations=iterations, residual=residual, nfe=evaluations / len(x0)
    )
