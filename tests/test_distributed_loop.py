"""The shared fine-tuning loop on two gloo ranks (CPU): each round's prompt groups split
across the ranks, the budget counted over both, one writer, resumable checkpoints.

The model is the toy of tests/test_methods.py, untrained: these tests check the loop's
bookkeeping and that the ranks stay equal, not that the reward rises (test_methods does).
Both methods' two-rank runs happen once, in one spawn (`runs`: starting the two processes,
which import torch and diffusers, costs far more than the runs), and the tests read what
the ranks saved.
"""

from __future__ import annotations

import dataclasses
import json
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from graftbench import records
from graftbench.config import ConfigError
from graftbench.methods.ddpo import DDPO, DDPOConfig
from graftbench.methods.graft import Graft, GraftConfig
from graftbench.methods.loop import LoopConfig, run
from graftbench.methods.loop_state import check_ranks
from graftbench.methods.selection import SelectionConfig
from graftbench.methods.updater import OptimConfig
from tests.test_distributed import free_port
from tests.test_methods import TARGETS, Toy

CONDITIONS = list(range(8))  # distinct, so a round's groups can be told apart; the model
# sees c % 2 (the toy's two prompts) and the reward rewards that prompt's mode
# 10 groups of M = 8: rounds of 4, 4 and 2 groups (the budget's remainder, 1 per rank)
LOOP = LoopConfig(reward_budget=80, prompts_per_round=4, samples_per_prompt=8, num_steps=4)
GROUPS = [4, 4, 2]
OPTIM = OptimConfig(trainable="full", lr=1e-3, batch_size=8)
METHODS = ("graft", "ddpo")


def build(name: str):
    torch.manual_seed(0)  # the same initial weights on every rank
    if name == "graft":
        sel = SelectionConfig(rule="top_k", k=4)
        return Graft(Toy(), GraftConfig(loop=LOOP, selection=sel, optim=OPTIM, epochs=2))
    # per-prompt advantages with a window the ranks fill separately: a resume must restore it
    return DDPO(
        Toy(),
        DDPOConfig(
            loop=LOOP,
            optim=OPTIM,
            inner_epochs=2,
            clip_range=0.2,
            stat_buffer=16,
            stat_min_count=16,
        ),
    )


def reward(x, conds):
    return -(x - TARGETS[torch.as_tensor(conds) % 2]).norm(dim=1)


def model_input(c):
    return c % 2


def params(method) -> list[torch.Tensor]:
    return [p.detach().clone() for p in method.model.network.parameters()]


def _rank(rank: int, size: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)  # two processes on two cores
    dist.init_process_group("gloo", rank=rank, world_size=size)
    try:
        for name in METHODS:
            torch.save(_runs(rank, f"{out}/{name}", name), f"{out}/{name}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _runs(rank: int, out: str, name: str) -> dict:
    """This rank's view of: a run with an indivisible prompts_per_round, an uninterrupted
    run, and a run killed in round 2 then resumed from its checkpoint."""
    result = {}
    try:  # raised on both ranks before any collective, so neither waits for the other
        run(build(name), CONDITIONS, reward, dataclasses.replace(LOOP, prompts_per_round=3))
    except ConfigError as e:
        result["error"] = str(e)

    scored, curve_rounds = [], []

    def spy(x, conds):
        r = reward(x, conds)
        scored.append((list(conds), r))
        return r

    def on_round(row):
        curve_rounds.append(row["round"])
        return {"curve_reward": 0.0}

    whole = build(name)
    result["rows"] = run(
        whole,
        CONDITIONS,
        spy,
        LOOP,
        model_input=model_input,
        log=f"{out}/log{rank}.jsonl",
        on_round=on_round,
        checkpoint=f"{out}/whole.partial",
        checkpoint_every_s=0,
    )
    result |= {"params": params(whole), "scored": scored, "curve_rounds": curve_rounds}

    calls = []

    def killed(x, conds):
        if len(calls) == 2:  # in round 2, on both ranks, as a kill of the job would land
            raise KeyboardInterrupt
        calls.append(len(conds))
        return reward(x, conds)

    kwargs = dict(model_input=model_input, checkpoint=f"{out}/killed.partial", checkpoint_every_s=0)
    try:
        run(build(name), CONDITIONS, killed, LOOP, **kwargs)
    except KeyboardInterrupt:
        pass
    resumed, rescored = build(name), []

    def counted(x, conds):
        rescored.append(len(conds))
        return reward(x, conds)

    result["resumed_rows"] = run(resumed, CONDITIONS, counted, LOOP, **kwargs)
    result |= {"resumed_params": params(resumed), "rescored": rescored}
    return result


@pytest.fixture(scope="module")
def spawned(tmp_path_factory):
    out = tmp_path_factory.mktemp("ranks")
    for name in METHODS:
        (out / name).mkdir()
    mp.spawn(_rank, args=(2, free_port(), str(out)), nprocs=2, join=True)
    return out


@pytest.fixture(params=METHODS)
def runs(request, spawned):
    """(method name, its folder, what each rank saved)."""
    out = spawned / request.param
    return request.param, out, [torch.load(out / f"rank{r}.pt", weights_only=False) for r in (0, 1)]


def test_ranks_end_bit_identical_and_spend_the_budget_once(runs):
    name, _, ranks = runs
    start = params(build(name))
    for a, b, s in zip(ranks[0]["params"], ranks[1]["params"], start, strict=True):
        assert torch.equal(a, b) and not torch.equal(a, s)
    queries = [sum(len(c) for c, _ in r["scored"]) for r in ranks]
    assert queries == [40, 40] and sum(queries) == LOOP.reward_budget
    for r in ranks:
        rows = r["rows"]
        assert [row["reward_queries"] for row in rows] == [32, 64, 80]
        assert [row["n_prompts"] for row in rows] == GROUPS
        assert rows[-1]["sampler_nfe"] == LOOP.reward_budget * LOOP.num_steps
        # counts over both ranks' samples: top-4 of 8 per group, every DDPO trajectory
        per_group = 4 if name == "graft" else 8
        assert [row["n_accepted"] for row in rows] == [g * per_group for g in GROUPS]
    # the row's reward statistics are over both ranks' samples, rank 0's first
    for i, row in enumerate(ranks[0]["rows"]):
        both = torch.cat([ranks[0]["scored"][i][1], ranks[1]["scored"][i][1]])
        assert row["reward_mean"] == both.mean().item()
        assert row["reward_max"] == both.max().item()
        assert ranks[1]["rows"][i]["reward_mean"] == row["reward_mean"]


def test_each_round_splits_its_prompt_groups_between_the_ranks(runs):
    _, _, ranks = runs
    for i, groups in enumerate(GROUPS):
        shares = []
        for r in ranks:
            conds = r["scored"][i][0]
            # whole groups: each condition's M samples consecutive, on this rank only
            firsts = conds[:: LOOP.samples_per_prompt]
            assert conds == [c for c in firsts for _ in range(LOOP.samples_per_prompt)]
            shares.append(set(firsts))
            assert len(firsts) == groups // 2
        assert not shares[0] & shares[1] and len(shares[0] | shares[1]) == groups


def test_only_rank_zero_logs_evaluates_and_checkpoints(runs):
    _, out, ranks = runs
    assert ranks[0]["curve_rounds"] == [0, 1, 2] and ranks[1]["curve_rounds"] == []
    assert "curve_reward" in ranks[0]["rows"][0] and "curve_reward" not in ranks[1]["rows"][0]
    assert not (out / "log1.jsonl").exists()
    logged = [json.loads(line) for line in (out / "log0.jsonl").read_text().splitlines()]
    assert [row["round"] for row in logged] == [0, 1, 2]
    assert logged[-1]["reward_queries"] == LOOP.reward_budget
    state = records.load_checkpoint(out / "whole.partial")
    assert state["config"]["world_size"] == 2 and len(state["ranks"]) == 2
    # each rank's own sampler state: the ranks drew different noise
    assert not torch.equal(
        state["ranks"][0]["sample_generator"], state["ranks"][1]["sample_generator"]
    )


def test_a_killed_two_rank_run_resumes_to_the_uninterrupted_result(runs):
    name, out, ranks = runs
    skip = {"sample_s", "reward_s", "train_s", "elapsed_s", "curve_reward"}
    for r in ranks:
        assert r["rescored"] == [8], "the rerun must continue after round 1 (one group a rank)"
        assert all(torch.equal(a, b) for a, b in zip(r["params"], r["resumed_params"], strict=True))
        for a, b in zip(r["rows"], r["resumed_rows"], strict=True):
            assert {k: v for k, v in a.items() if k not in skip} == {
                k: v for k, v in b.items() if k not in skip
            }
    # a two-rank checkpoint is not resumed by one process: it starts over
    scored = []

    def counted(x, conds):
        scored.append(len(conds))
        return reward(x, conds)

    run(
        build(name),
        CONDITIONS,
        counted,
        LOOP,
        model_input=model_input,
        checkpoint=out / "whole.partial",
    )
    assert scored == [32, 32, 16]


def test_prompts_per_round_and_the_budget_must_split_across_ranks(runs):
    _, _, ranks = runs
    for r in ranks:
        assert r["error"].startswith(
            "loop.prompts_per_round: 3 must be a multiple of the world size (2 ranks)"
        )
    method = build("graft")
    with pytest.raises(ConfigError, match="loop.reward_budget: 72 must be a multiple of "):
        check_ranks(method, dataclasses.replace(LOOP, reward_budget=72), 2)
    method.cfg = dataclasses.replace(method.cfg, selection=SelectionConfig(rule="rso"))
    with pytest.raises(ConfigError, match="selection.rule: 'rso'"):
        check_ranks(method, LOOP, 2)
    check_ranks(method, dataclasses.replace(LOOP, prompts_per_round=3), 1)  # one process: any


def test_torchrun_finetune_verb_on_two_cpu_ranks(tmp_path):
    """The workflow's launch with gpus_per_job = 2, on the CPU: `torchrun -m graftbench
    finetune` joins a gloo group, both ranks spend one budget between them, and rank 0 alone
    writes the run's records (and prints its line)."""
    import subprocess
    import sys

    from graftbench.__main__ import main
    from graftbench.spec import SuiteConfig
    from tests.test_t2i_task import smoke

    cfg = smoke()
    cfg["pretrain"].update(steps=2, checkpoint_every=2, warmup=1)
    cfg["scenes"].update(n_train_per_category=2, n_heldout_per_category=1)
    cfg["evaluate"].update(curve_prompts=2)
    cfg["finetune_prompts"] = 4
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    common = ["--task", "t2i", "--config", str(tmp_path / "cfg.json")]
    model = str(tmp_path / "model.pt")
    assert main(["pretrain", *common, "--out", model]) == 0
    assert (
        main(
            [
                "evaluate-model",
                *common,
                "--model",
                model,
                "--seed",
                "0",
                "--out",
                str(tmp_path / "base"),
            ]
        )
        == 0
    )
    launch = SuiteConfig(gpus_per_job=2).finetune_command(sys.executable).split()
    out = tmp_path / "graft"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run_ = subprocess.run(
        [
            *launch,
            "finetune",
            *common,
            "--model",
            model,
            "--run",
            "graft",
            "--seed",
            "0",
            "--base",
            str(tmp_path / "base"),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert run_.returncode == 0, run_.stderr[-3000:]
    assert run_.stderr.count("graft seed 0: held-out reward") == 1  # rank 0 only
    m = records.read_json(out / "metrics.json")
    rounds = records.read_jsonl(out / "rounds.jsonl")
    budget = cfg["graft"]["loop"]["reward_budget"]
    assert m["reward_queries"] == budget and rounds[-1]["reward_queries"] == budget
    # each round's 4 prompt groups were split 2 + 2, so the row counts all of them
    assert all(r["n_prompts"] == 4 for r in rounds)
    assert not (out / "loop.partial").exists() and "torch" in m["versions"]
