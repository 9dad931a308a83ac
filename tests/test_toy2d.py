"""The toy2d task: its exact target laws (each GRAFT rule's accepted law, in closed form)
integrate to 1 and match what the selection code the fine-tuning loop runs accepts; its
deterministic sampler is the flow INC inverts; the analyses run; bad configs name the key."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from graftbench.__main__ import main
from graftbench.config import ConfigError, parse
from graftbench.methods.selection import SelectionConfig, acceptance_weight, select, target_weights
from graftbench.tasks.toy2d import data
from graftbench.tasks.toy2d.config import RingConfig, Toy2dConfig
from graftbench.tasks.toy2d.model import Toy2dAdapter, flow_view

RULES = [
    (SelectionConfig(rule="top_k", k=8), 64),
    (SelectionConfig(rule="top_k", k=3), 5),
    (SelectionConfig(rule="best_of_n"), 8),
    (SelectionConfig(rule="threshold", tau=0.8), 64),
]
LOOP = {"reward_budget": 512, "prompts_per_round": 8, "samples_per_prompt": 64, "num_steps": 8}
SMALL = {
    "methods": ["base", "graft", "pgraft", "best_of_m"],
    "seeds": [0],
    "model": {"width": 32, "depth": 2, "time_dim": 8},
    "pretrain": {
        "steps": 200,
        "batch_size": 256,
        "lr": 0.003,
        "warmup": 20,
        "checkpoint_every": 200,
    },
    "graft": {"loop": LOOP, "selection": {"k": 8}, "epochs": 2},
    "pgraft": {"loop": LOOP, "selection": {"k": 8}, "intermediate_steps": [4]},
    "best_of_m": {"m": 8},
    "evaluate": {"num_steps": 8, "samples": 300, "curve_samples": 50, "target_pool": 4000},
    "variance": {"states": 64, "rollouts": 16},
    "inc": {
        "base_steps": [8, 16],
        "corrected_steps": [16],
        "corrector_steps": [8],
        "train": {"max_steps": 4000, "eval_every": 50, "patience": 2},
    },
}


def reward_fn():
    return data.bump(RingConfig(), Toy2dConfig().reward)


@pytest.mark.parametrize(("rule", "m"), RULES, ids=lambda v: getattr(v, "rule", v))
def test_exact_target_law_integrates_to_one_on_a_grid(rule, m):
    """p_acc = p w(F(r)) with p the data law in closed form and F the law of r under p (from a
    large sample): its integral over a grid is 1, which holds only if w is the rule's law."""
    ring, r = RingConfig(), reward_fn()
    sorted_r = r(data.sample(ring, 400_000, torch.Generator().manual_seed(0))).sort().values
    lim, cells = 3.0, 400
    axis = torch.linspace(-lim, lim, cells)
    xx, yy = torch.meshgrid(axis, axis, indexing="xy")
    grid = torch.stack([xx.flatten(), yy.flatten()], 1)
    rg = r(grid)
    f = torch.searchsorted(sorted_r, rg).double() / len(sorted_r)
    w = acceptance_weight(f, rg, rule, m)
    if rule.rule == "threshold":
        w = w / (sorted_r >= rule.tau).double().mean()
    density = data.log_density(ring, grid).exp() * w
    integral = density.sum().item() * (2 * lim / (cells - 1)) ** 2
    assert integral == pytest.approx(1.0, abs=0.01)
    assert density.max() > data.log_density(ring, grid).exp().max()  # it reshapes


@pytest.mark.parametrize(("rule", "m"), RULES, ids=lambda v: getattr(v, "rule", v))
def test_target_weights_match_the_loops_selection_by_monte_carlo(rule, m):
    """Groups of M samples through `methods.selection.select` (what GRAFT's loop runs) accept
    a law whose moments equal the reweighted sample's, within Monte Carlo error."""
    ring, r = RingConfig(), reward_fn()
    x = data.sample(ring, 64 * 3000 // m * m, torch.Generator().manual_seed(1))
    rewards = r(x)
    accepted = select(rewards.view(-1, m), rule).flatten()
    w = target_weights(rewards, rule, m)
    assert w.mean().item() == pytest.approx(1.0)
    angle = torch.atan2(x[:, 1], x[:, 0])
    for name, f in {
        "r": rewards,
        "x": x[:, 0],
        "y": x[:, 1],
        "cos 2a": torch.cos(2 * angle),
    }.items():
        got = f[accepted].double()
        want = (w * f.double()).mean()
        se = got.std() / len(got) ** 0.5
        assert abs(got.mean() - want) < 5 * se + 1e-4, (name, got.mean().item(), want.item())


def test_deterministic_ddim_is_the_euler_flow_that_inc_inverts():
    from graftbench.finetuning.build import plain_factory
    from graftbench.sampling.flow import invert_euler, solve_flow

    torch.manual_seed(0)
    model = Toy2dAdapter(Toy2dConfig().model)
    x_t = torch.randn(256, 2, generator=torch.Generator().manual_seed(0))
    ddim = model.sample_trajectory(
        plain_factory(model)(["ring"] * 256),
        model.scheduler("ddim"),
        x_t,
        num_steps=20,
        generator=torch.Generator(),
        eta=0.0,
        keep={20},
    ).sample
    velocity, sigmas, scale = flow_view(model, 20)
    y, nfe = solve_flow(velocity, x_t / scale, sigmas)
    assert nfe == 20 and (y - ddim).abs().max() < 1e-4
    back = invert_euler(velocity, y, sigmas, max_iters=50, tol=1e-7).noise * scale
    assert (back - x_t).abs().max() < 1e-3


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A briefly pre-trained toy2d base with the SMALL config, and its base run."""
    root = tmp_path_factory.mktemp("toy2d")
    torch.set_num_threads(1)
    cfg = json.dumps(SMALL)
    assert (
        main(["pretrain", "--task", "toy2d", "--config", cfg, "--out", str(root / "model.pt")]) == 0
    )
    common = ["--task", "toy2d", "--config", cfg, "--model", str(root / "model.pt")]
    assert main(["evaluate-model", *common, "--seed", "0", "--out", str(root / "base")]) == 0
    return root, cfg, common


def test_base_run_writes_every_runs_exact_target(small):
    root, _, _ = small
    targets = np.load(root / "base" / "targets.npz")
    assert sorted(targets) == ["base", "best_of_m", "graft", "pgraft4"]
    assert all(targets[k].shape == (600, 2) for k in targets)
    r = reward_fn()
    mean = {k: r(torch.from_numpy(targets[k])).mean().item() for k in targets}
    # selection raises the reward; P-GRAFT's ranking of noisy states raises it less
    assert mean["base"] < mean["pgraft4"] < mean["graft"]
    assert mean["base"] < mean["best_of_m"]


def test_best_of_m_run_lands_on_its_exact_target(small):
    """The best_of_m run (the runner's best of m draws) against its target (m F^(m-1)
    reweighting): as close as two samples of the target are, far closer than the base is."""
    from graftbench.methods.inc import energy_distance

    root, _, common = small
    out = ["--run", "best_of_m", "--base", str(root / "base"), "--out", str(root / "best")]
    assert main(["finetune", *common, "--seed", "0", *out]) == 0
    t = torch.from_numpy(np.load(root / "base" / "targets.npz")["best_of_m"])
    pts = torch.from_numpy(np.load(root / "best" / "points.npz")["points"])
    base = torch.from_numpy(np.load(root / "base" / "points.npz")["points"])
    null = energy_distance(t[300:], t[:300])
    assert energy_distance(pts, t[:300]) < null + 0.03 < energy_distance(base, t[:300])


def test_reward_variance_falls_from_all_of_it_to_none(small, tmp_path):
    root, cfg, common = small
    out = tmp_path / "variance.json"
    assert main(["reward-variance", *common, "--out", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    share = [r["share_of_variance"] for r in rows]
    assert len(rows) == 9 and share[-1] == 0.0
    assert share[0] == pytest.approx(1.0, abs=0.25) and share[0] > share[4] > share[7]


def test_the_analyses_run_on_a_cpu_copy_of_the_model(small, tmp_path):
    from graftbench.tasks.toy2d.model import Toy2dAdapter
    from graftbench.tasks.toy2d.targets import on_cpu

    root, _, _ = small
    model = Toy2dAdapter.load(root / "model.pt")
    assert on_cpu(model) is model  # on the CPU already: nothing copied


@pytest.mark.gpu
def test_the_analyses_give_the_same_numbers_from_a_model_on_cuda(small, tmp_path):
    """Var[r | x_t] (and the exact targets, INC) draw from CPU generators on a CPU copy of the
    model whatever --device (on CUDA they once failed: a CPU generator drawing on the device)."""
    root, cfg, common = small
    for device in ("cpu", "cuda"):
        out = ["--out", str(tmp_path / f"{device}.json"), "--device", device]
        assert main(["reward-variance", *common, *out]) == 0
    cpu, cuda = (json.loads((tmp_path / f"{d}.json").read_text()) for d in ("cpu", "cuda"))
    assert cpu["rows"] == cuda["rows"]


def test_inc_frontier_trains_until_the_held_out_loss_stops_and_scores_every_sampler(
    small, tmp_path
):
    root, cfg, common = small
    out = tmp_path / "inc.json"
    assert main(["inc-frontier", *common, "--seed", "0", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    kinds = [(r["sampler"], r["base_steps"], r["corrector_steps"]) for r in res["rows"]]
    assert kinds == [("base", 8, 0), ("base", 16, 0), ("oracle", 16, 0), ("base+inc", 16, 8)]
    corrector = res["correctors"]["16"]
    assert corrector["inverted"] == 4096 and corrector["recon_rms"] < 1e-3
    assert corrector["stopped_at"] < 4000  # stopped early: the held-out loss stopped falling
    held = [c["held_loss"] for c in corrector["curve"]]
    assert min(held) < held[0]
    inc = res["rows"][-1]
    assert inc["flops"] > res["rows"][1]["flops"] and np.isfinite(inc["energy"])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"graft": {"loop": {**LOOP, "eta": 0.0}}}, "toy2d.graft.loop.eta"),
        ({"graft": {"loop": {**LOOP, "reward_budget": 1024}}}, "toy2d.graft.loop.reward_budget"),
        ({"inc": {"corrected_steps": [3]}}, "toy2d.inc.corrected_steps: 3"),
        ({"evaluate": {"target_pool": 10}}, "toy2d.evaluate.target_pool"),
    ],
)
def test_bad_configs_name_the_key(override, message):
    cfg = {**SMALL, **override}
    if "graft" in override:
        cfg["graft"] = {**SMALL["graft"], **override["graft"]}
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        parse(Toy2dConfig, cfg, "toy2d")
