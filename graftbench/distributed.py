"""Data parallelism inside one job: the pieces the fine-tuning loop needs when it runs on
several processes (one per GPU, launched by `torchrun` or `accelerate launch`).

Every rank holds the whole model. Each optimiser step averages the gradients over ranks
before clipping (`Updater.step` calls `average_gradients`), so all ranks take the same step
and stay equal; a rank's gradient of its own mean loss, averaged over ranks with equal
local batches, is the gradient of the global batch's mean loss. Forgetting that average is a
known failure of earlier DDPO code: each rank then trains its own model on its own samples.
Ranks draw different samples (`rank_seed`), and one rank writes results (`is_writer`).
`loop.run` exchanges its few small per-round values (rewards, statistics, generator states)
as Python objects (`all_gather_objects`); under an NCCL-only process group those travel on
the current CUDA device, so the launcher sets it (`torch.cuda.set_device(LOCAL_RANK)`).

With no process group initialised (a plain `python -m graftbench` run) every function is the
identity, and results are bit-identical to code without them. Averaging by hand rather than
wrapping the network in DistributedDataParallel: the methods call the adapters' own
forward paths (P-GRAFT's intermediate loss, DDPO's per-step log-probs) several times per
step, and DDP's hooks assume one forward per backward on the wrapped module.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import numpy as np
import torch
import torch.distributed as dist


def join_ranks(device: str) -> str:
    """Under torchrun (WORLD_SIZE > 1 in the environment): join the process group and return
    this rank's device, `cuda:LOCAL_RANK` for cuda (NCCL) or `device` itself (gloo, e.g. on
    the CPU). Without torchrun: `device`, untouched, and no process group.

    The timeout is long because ranks wait at the next collective while rank 0 alone
    evaluates the held-out curve (minutes at paper scale; NCCL's default is 10)."""
    if int(os.environ.get("WORLD_SIZE", "1")) == 1 or dist.is_initialized():
        return device
    backend = "gloo"
    if device.startswith("cuda"):
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)  # the object collectives travel on the current GPU
        device, backend = f"cuda:{local}", "nccl"
    dist.init_process_group(backend, timeout=timedelta(hours=2))
    atexit.register(dist.destroy_process_group)  # NCCL warns about a group left open
    return device


def rank_gpu_env() -> dict[str, str] | None:
    """The environment for a child process (e.g. a scorer) of this rank, showing it this
    rank's GPU alone, so that every rank's child does not load onto GPU 0; None (inherit)
    without several ranks."""
    if world()[1] == 1 or "LOCAL_RANK" not in os.environ:
        return None
    local = int(os.environ["LOCAL_RANK"])
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    gpus = visible.split(",") if visible else [str(i) for i in range(torch.cuda.device_count())]
    if local >= len(gpus):  # ranks on the CPU: nothing to pin
        return None
    return {**os.environ, "CUDA_VISIBLE_DEVICES": gpus[local]}


def world() -> tuple[int, int]:
    """(rank, number of ranks); (0, 1) without a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_writer() -> bool:
    """Whether this rank writes results, checkpoints and logs (rank 0 only)."""
    return world()[0] == 0


def rank_seed(seed: int, rank: int | None = None) -> int:
    """The seed of a rank's own random streams: `seed` itself on rank 0 (so one process
    reproduces a single-process run), independent streams on the others."""
    rank = world()[0] if rank is None else rank
    if rank == 0:
        return seed
    return int(np.random.SeedSequence([seed, rank]).generate_state(1, dtype=np.uint64)[0] >> 1)


@torch.no_grad()
def average_gradients(params: Sequence[torch.nn.Parameter]) -> None:
    """Replace each parameter's gradient by its mean over ranks (a no-op on one rank).

    A parameter with a gradient on some ranks but not on this one counts as zero here; one
    with no gradient on any rank keeps none, so the optimiser skips it as it would on one
    process. All gradients travel in one flat tensor: one collective per step."""
    _, size = world()
    if size == 1:
        return
    params = list(params)
    # on the parameters' device: an NCCL-only process group refuses CPU tensors
    has = torch.tensor(
        [p.grad is not None for p in params], dtype=torch.int32, device=params[0].device
    )
    dist.all_reduce(has, op=dist.ReduceOp.MAX)
    live = [p for p, h in zip(params, has.tolist(), strict=True) if h]
    for p in live:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    if not live:
        return
    flat = torch.cat([p.grad.reshape(-1) for p in live])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat.div_(size)
    offset = 0
    for p in live:
        n = p.grad.numel()
        p.grad.copy_(flat[offset : offset + n].view_as(p.grad))
        offset += n


def all_gather_objects(obj: Any) -> list:
    """Every rank's `obj` (picklable), in rank order; [obj] itself, not a copy, on one
    process. A collective: every rank calls it at the same point."""
    _, size = world()
    if size == 1:
        return [obj]
    out: list = [None] * size
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    """Wait until every rank gets here (nothing on one process)."""
    if world()[1] > 1:
        dist.barrier()


def from_writer(obj: Any) -> Any:
    """The writer's `obj` on every rank (a collective), for decisions that ranks must share,
    e.g. whether this round writes a checkpoint when only the writer's clock decides."""
    return all_gather_objects(obj)[0]


def merge_stats(per_rank: Sequence[dict], summed: Sequence[str] = ()) -> dict:
    """One round's statistics from every rank's dict (same keys): the keys in `summed`
    (counts of samples or examples) are added up; other numbers that differ between ranks
    are averaged, which for per-rank means over equal-sized local batches is the mean over
    all of them (a per-rank maximum becomes a mean of maxima); anything else is rank 0's."""
    out = dict(per_rank[0])
    for key, first in out.items():
        values = [s[key] for s in per_rank]
        if key in summed:
            out[key] = sum(values)
        elif all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            if any(v != first for v in values):  # NaNs differ too, and average to NaN
                out[key] = float(np.mean(values))
    return out
