"""Inverse noise correction on the toy2d base, where the data law is known: the base's
deterministic DDIM sampler seen as a flow (`model.flow_view`), every training point (perturbed
by `inc.invert.perturb`, the paper's 1e-3) inverted through it, and a small corrector flow
trained on the inverted noise until its held-out loss stops falling. Each sampler's distance
to the data law (energy distance to fresh exact draws, beside the level two data samples
give) against FLOPs per sample: the base at every `inc.base_steps`, base + INC at every
`corrected_steps` x `corrector_steps`, and the oracle (the held-out inverted noise itself
through the base: a perfect corrector's level)."""

from __future__ import annotations

import copy
import math
import time

import torch

from graftbench.flops import flops_per_sample
from graftbench.methods.inc import corrector_loss, energy_distance, invert_data, noise_diagnostics
from graftbench.paths import rectified_flow, sample_sigma
from graftbench.sampling.flow import flow_sigmas, solve_flow
from graftbench.tasks.toy2d import data
from graftbench.tasks.toy2d.config import Toy2dConfig, Toy2dIncConfig
from graftbench.tasks.toy2d.model import MLP, flow_view
from graftbench.tasks.toy2d.targets import on_cpu


def train_corrector(
    z: torch.Tensor, held: torch.Tensor, cfg: Toy2dIncConfig, seed: int
) -> tuple[MLP, list[dict]]:
    """A corrector flow N(0, I) -> law of z, trained by flow matching (`methods.inc.
    corrector_loss`) until the loss on `held` (train.held_draws fixed sigmas and noises per
    point) has not reached a new
    best for `train.patience` evaluations; returns the best weights and the loss curve.
    (A loop of its own: `train.fit` has no held-out loss or stopping rule.)"""
    t = cfg.train
    torch.manual_seed(seed)
    net = MLP(cfg.model)
    opt = torch.optim.Adam(net.parameters(), lr=t.lr)
    g = torch.Generator().manual_seed(seed)
    loss = corrector_loss(net, z, t.batch_size, "logit_normal")
    gh = torch.Generator().manual_seed(seed + 1)
    rep = held.repeat(t.held_draws, 1)
    path = rectified_flow(rep, torch.randn(rep.shape, generator=gh), sample_sigma(len(rep), gh))
    best, best_state, stale, curve, recent = float("inf"), None, 0, [], []
    for step in range(1, t.max_steps + 1):
        value = loss(step, g)
        opt.zero_grad()
        value.backward()
        opt.step()
        recent.append(value.item())
        if step % t.eval_every:
            continue
        with torch.no_grad():
            held_loss = torch.nn.functional.mse_loss(net(path.xt, path.t), path.target).item()
        curve.append(
            {"step": step, "train_loss": sum(recent) / len(recent), "held_loss": held_loss}
        )
        recent = []
        if held_loss < best:
            best, best_state, stale = held_loss, copy.deepcopy(net.state_dict()), 0
        else:
            stale += 1
            if stale >= t.patience:
                break
    net.load_state_dict(best_state)
    return net.eval(), curve


def angle_tv(a: torch.Tensor, b: torch.Tensor, bins: int = 32) -> float:
    """Total variation between the laws of two point sets' angles (histograms of `bins`
    sectors): the ring's inverted noise is sectored (the base's basins of the 8 modes), which
    a law's radius and energy distance barely show."""

    def hist(x: torch.Tensor) -> torch.Tensor:
        h = torch.histc(torch.atan2(x[:, 1], x[:, 0]), bins, -math.pi, math.pi)
        return h / h.sum()

    return 0.5 * (hist(a) - hist(b)).abs().sum().item()


def as_velocity(net: MLP):
    """The corrector as `solve_flow` calls it: (x, sigma) -> v, the network taking 1000 sigma."""
    return lambda x, sigma: net(x, 1000 * sigma)


@torch.no_grad()
def frontier(model, cfg: Toy2dConfig, seed: int) -> dict:
    """Every sampler's energy distance to the data law against FLOPs per sample (module doc)."""
    model = on_cpu(model)  # CPU generators below (targets.on_cpu)
    inc, n = cfg.inc, cfg.evaluate.samples
    t0 = time.perf_counter()
    g = torch.Generator().manual_seed(seed)
    exact = data.sample(cfg.data, 2 * n, g)
    ref, null = exact[:n], energy_distance(exact[n:], exact[:n])
    eps = torch.randn(n, 2, generator=g)
    probe = torch.zeros(8, 2)
    f_base = flops_per_sample(lambda x: model.network(x, torch.zeros(len(x))), probe)
    rows = []

    def row(kind, steps, c_steps, f_corr, x, **extra):
        flops = steps * f_base + c_steps * f_corr
        dist = energy_distance(x, ref)
        extra["off_mode_share"] = data.off_mode_share(cfg.data, x)
        rows.append(
            {
                "sampler": kind,
                "base_steps": steps,
                "corrector_steps": c_steps,
                "flops": flops,
                "energy": dist,
                "energy_null": null,
                **extra,
            }
        )

    views = {s: flow_view(model, s) for s in inc.base_steps}
    for s, (velocity, sigmas, scale) in views.items():
        row("base", s, 0, 0, solve_flow(velocity, eps / scale, sigmas)[0])
    train = data.training_points(cfg.data)
    if inc.invert.n_images:  # 0: all of them
        train = train[: inc.invert.n_images]
    correctors = {}
    for s in inc.corrected_steps:
        velocity, sigmas, scale = views[s]
        inverted = invert_data(velocity, train, sigmas, inc.invert, g)
        z = inverted.noise * scale  # x_T, the DDIM sampler's input
        order = torch.randperm(len(z), generator=g)
        cut = max(2, int(inc.invert.holdout * len(z)))
        held, fit = z[order[:cut]], z[order[cut:]]
        with torch.enable_grad():
            net, curve = train_corrector(fit, held, inc, seed)
        corrector = as_velocity(net)
        f_corr = flops_per_sample(lambda x, v=corrector: v(x, torch.zeros(len(x))), probe)
        oracle = solve_flow(velocity, z[order[:n]] / scale, sigmas)[0]
        row("oracle", s, 0, 0, oracle)
        for c in inc.corrector_steps:
            corrected, _ = solve_flow(corrector, eps, flow_sigmas(c))
            x = solve_flow(velocity, corrected / scale, sigmas)[0]
            diag = noise_diagnostics(held, g, corrected[: len(held)])
            angles = {
                "noise_angle_tv_before": angle_tv(z, eps),
                "noise_angle_tv_after": angle_tv(z, corrected),
                "noise_angle_tv_null": angle_tv(torch.randn(z.shape, generator=g), eps),
            }
            row(
                "base+inc",
                s,
                c,
                f_corr,
                x,
                noise_energy_before=diag["energy_before"],
                noise_energy_after=diag["energy_after"],
                noise_energy_null=diag["energy_null"],
                **angles,
            )
        correctors[s] = {
            "curve": curve,
            "stopped_at": curve[-1]["step"],
            "best_held_loss": min(r["held_loss"] for r in curve),
            "inverted": len(z),
            "recon_rms": inverted.recon_rms,
            "recon_max": inverted.recon_max,
            "inversion_nfe": inverted.nfe,
            "flops_per_call": f_corr,
        }
    return {
        "seed": seed,
        "flops_per_call": f_base,
        "rows": rows,
        "correctors": correctors,
        "wall_s": time.perf_counter() - t0,
    }
