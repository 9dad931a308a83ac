"""Data-parallel fine-tuning on CPU: two gloo processes through the real Updater."""

import os
import socket
from types import SimpleNamespace

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from graftbench.distributed import average_gradients, is_writer, rank_seed, world
from graftbench.methods.updater import OptimConfig, Updater
from graftbench.models.base import ModelAdapter

STEPS = 3


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.body = torch.nn.Sequential(
            torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3)
        )
        self.unused = torch.nn.Linear(2, 2)  # gets no gradient anywhere: must stay untouched

    def forward(self, x):
        return self.body(x)


def model():
    """The network, and the `ModelAdapter` default of what the Updater trains (all of it)."""
    torch.manual_seed(0)
    m = SimpleNamespace(network=Net())
    m.trainable_parameters = lambda which, lora=None: ModelAdapter.trainable_parameters(
        m, which, lora
    )
    return m


def global_batches():
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(8, 5, generator=g), torch.randn(8, 3, generator=g)) for _ in range(STEPS)]


def train(rank: int, size: int) -> dict:
    """STEPS optimiser steps, this rank fitting its equal share of each global batch."""
    m = model()
    updater = Updater(m, OptimConfig(trainable="full", lr=0.05, weight_decay=0.01, grad_clip=0.5))
    for x, y in global_batches():
        xs, ys = x.chunk(size)[rank], y.chunk(size)[rank]
        torch.nn.functional.mse_loss(m.network(xs), ys).backward()
        updater.step()
    return {k: v.clone() for k, v in m.network.state_dict().items()}


def _rank(rank: int, size: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=size)
    try:
        assert world() == (rank, size) and is_writer() == (rank == 0)
        torch.save(train(rank, size), f"{out}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_ranks_stay_equal_and_match_one_process_on_the_global_batch(tmp_path):
    mp.spawn(_rank, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1)]
    single = train(0, 1)
    start = model().network.state_dict()
    for name, value in single.items():
        assert torch.equal(ranks[0][name], ranks[1][name]), name  # bit-identical across ranks
        torch.testing.assert_close(ranks[0][name], value, rtol=1e-5, atol=1e-6)
        if name.startswith("unused"):
            assert torch.equal(value, start[name])  # no gradient: AdamW skipped it
        else:
            assert not torch.equal(value, start[name])  # it did train


def test_without_a_process_group_everything_is_the_identity():
    assert world() == (0, 1) and is_writer()
    p = torch.nn.Parameter(torch.ones(3))
    p.grad = torch.full((3,), 2.0)
    average_gradients([p])
    assert torch.equal(p.grad, torch.full((3,), 2.0))


def test_rank_seeds_keep_rank_zero_and_differ_across_ranks():
    assert rank_seed(7, 0) == 7
    seeds = {rank_seed(7, r) for r in range(8)}
    assert len(seeds) == 8 and all(0 <= s < 2**63 for s in seeds)
    assert rank_seed(7, 3) == rank_seed(7, 3) != rank_seed(8, 3)


def test_the_single_process_run_is_unchanged_by_the_averaging():
    # Updater.step with no process group equals clip + AdamW alone
    m, ref = model(), model()
    updater = Updater(m, OptimConfig(trainable="full", lr=0.05, grad_clip=0.5))
    params = list(ref.network.parameters())
    opt = torch.optim.AdamW(params, lr=0.05, weight_decay=0.0)
    for x, y in global_batches():
        torch.nn.functional.mse_loss(m.network(x), y).backward()
        updater.step()
        torch.nn.functional.mse_loss(ref.network(x), y).backward()
        torch.nn.utils.clip_grad_norm_(params, 0.5)
        opt.step()
        opt.zero_grad(set_to_none=True)
    for a, b in zip(m.network.parameters(), ref.network.parameters(), strict=True):
        assert torch.equal(a, b)
