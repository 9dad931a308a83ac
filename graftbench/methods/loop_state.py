"""The fine-tuning loop's resumable state and its checks on several ranks (`loop.run` calls
these): what a checkpoint holds, when one may be resumed, and the settings the ranks must
share so that their collectives pair up."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path

import torch

from graftbench import records
from graftbench.config import ConfigError
from graftbench.distributed import all_gather_objects, barrier, is_writer, world

# `Updater.state_dict`'s entries, equal on every rank after the averaged steps: a multi-rank
# checkpoint stores them once, and the rest of each rank's method state (e.g. DDPO's
# per-prompt reward windows) per rank
log = logging.getLogger(__name__)


REPLICATED = ("params", "optimizer")


def check_ranks(method, cfg, size: int) -> None:
    """On several ranks, every round must give each rank the same number of groups and each
    rank must accept the same number of samples: the ranks then take the same number of
    optimiser steps, whose gradient averages are collectives that must pair up."""
    if size == 1:
        return
    if cfg.prompts_per_round % size:
        raise ConfigError(
            f"loop.prompts_per_round: {cfg.prompts_per_round} must be a multiple "
            f"of the world size ({size} ranks), so each rank gets whole prompt "
            "groups"
        )
    if cfg.reward_budget % (cfg.samples_per_prompt * size):
        raise ConfigError(
            f"loop.reward_budget: {cfg.reward_budget} must be a multiple of "
            f"samples_per_prompt x world size ({cfg.samples_per_prompt} x {size}), "
            "so the last round's groups split evenly across the ranks"
        )
    if why := method.varying_accepts():
        raise ConfigError(why)


def save_state(path, fingerprint, method, g, g_sample, g_train, order, rows, nfe, queries) -> None:
    """Write the loop's state (a collective on several ranks: each sends its own generators
    and the part of its method state that is its own; the writer writes)."""
    _, size = world()
    whole = method.state_dict()
    own = {"sample_generator": g_sample.get_state(), "torch_rng": torch.get_rng_state()}
    if size > 1:
        own |= {
            "train_generator": g_train.get_state(),
            "method": {k: v for k, v in whole.items() if k not in REPLICATED},
        }
    ranks = all_gather_objects(own)
    if is_writer():
        state = {
            "method": whole,
            "generator": g.get_state(),
            "sample_generator": own["sample_generator"],
            "torch_rng": own["torch_rng"],
            "order": order,
            "rows": rows,
            "nfe": nfe,
            "queries": queries,
        }
        if size > 1:
            state["ranks"] = ranks
        records.save_checkpoint(path, state, fingerprint, kind="loop state")
    # no rank runs ahead of the file: one killed in the next round and restarted must find
    # the checkpoint of the round that every rank finished
    barrier()


def state_fingerprint(method, conditions: Sequence, size: int = 1) -> dict:
    """What must match for a checkpoint to be resumed: the method, its whole config (budget,
    sampler, optimiser, seed), the training conditions and, on several ranks, their number
    (absent on one process, so single-process checkpoints keep their fingerprint)."""
    cfg = method.cfg
    out = {
        "method": type(method).__name__,
        "config": dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) else repr(cfg),
        "conditions": [repr(c) for c in conditions],
    }
    if size > 1:
        out["world_size"] = size
    return out


def resumable(path: str | Path, fingerprint: dict) -> dict | None:
    """The checkpoint's state if it exists and was written for `fingerprint`, else None (a
    stale checkpoint from another config is reported and ignored: the run starts over)."""
    if not Path(path).exists():
        return None
    state = records.load_checkpoint(path, kind="loop state")
    if state.get("config") != fingerprint:
        if is_writer():
            log.warning(
                f"{path}: written by another method config, condition list or number of "
                "ranks; starting over"
            )
        return None
    if is_writer():
        log.info(
            f"{path}: resuming after round {len(state['rows']) - 1} "
            f"({state['queries']} reward queries spent)"
        )
    return state
