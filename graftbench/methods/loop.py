"""The one sample -> score -> select/advantage -> update loop of the reward fine-tuning
methods (STYLE habit 6), run at a fixed budget of reward queries.

Each round draws `prompts_per_round` conditions (cycling through shuffled passes over the
list), samples M = `samples_per_prompt` trajectories for each, group-major (the M samples of
a condition are consecutive), scores the final samples and hands the rewards as (groups, M)
to the method's `update`, which selects (GRAFT, P-GRAFT) or normalises advantages (DDPO) and
takes optimiser steps. Methods are compared at equal reward queries, the scarce resource at
paper scale (one VQAScore query runs an 11B-parameter model): the loop never scores more
than `reward_budget` samples and, the budget being a multiple of M, ends on it exactly.

A model is reached only through `models.base.FinetuneModel`: `encode_condition` +
`denoiser` build the sampler callable (`rollout`), `decode` maps final states to what the
reward scores, `scheduler` gives the sampler, `trainable_parameters` what `updater` trains.

Data parallel (several ranks, `graftbench.distributed`): every rank draws the same round of
conditions and samples, scores and trains on its own share of the groups, whole groups, so a
condition's M samples stay on one rank for GRAFT's per-condition selection and DDPO's
per-prompt advantages. The budget counts the queries of all ranks; the averaged optimiser
steps keep every rank's model equal; rank 0 alone logs, evaluates and checkpoints.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import torch
from tqdm.auto import tqdm

from graftbench import flops, records
from graftbench.config import ConfigError, Count, NonNegative
from graftbench.distributed import (
    all_gather_objects,
    from_writer,
    is_writer,
    merge_stats,
    rank_seed,
    world,
)
from graftbench.methods.loop_state import check_ranks, resumable, save_state, state_fingerprint
from graftbench.methods.reward import Reward, RewardCounter
from graftbench.methods.rollout import Rollout
from graftbench.models.base import FinetuneModel

logger = logging.getLogger(__name__)  # `log` is run's JSON-lines file


@dataclass
class LoopConfig:
    reward_budget: Count = 4096  # reward queries (samples scored) over the whole run, all ranks
    # together; a multiple of samples_per_prompt (times the ranks), so the last round can be
    # cut to whole groups (split evenly across ranks)
    prompts_per_round: Count = 16  # conditions per round, all ranks together (a multiple of the
    # ranks; the last round may take fewer)
    samples_per_prompt: Count = 8  # M, samples drawn per condition per round
    num_steps: Count = 20  # sampler steps N
    scheduler: Literal["ddim", "ddpm"] = "ddim"  # sampler (the adapter's `scheduler(kind)`)
    eta: NonNegative = 1.0  # DDIM stochasticity (1: DDPM-like, which DDPO needs; ignored by ddpm)
    guidance_scale: float | None = None  # CFG weight for adapters with `guided`; None: the
    # model's own default
    sample_batch: Count = 64  # trajectories per sampler call (memory, not maths)
    count_flops: bool = False  # count sampling and training FLOPs (graftbench.flops.counter)
    # (exact, forward and backward, but slows small models down: wall time is always logged)
    seed: int = 0  # condition order, initial noise, selection and training noise (on several
    # ranks: the condition order is shared, the rest is drawn per rank from `rank_seed`)

    def __post_init__(self):
        if self.reward_budget % self.samples_per_prompt:
            raise ConfigError(
                f"loop.reward_budget: {self.reward_budget} must be a multiple of "
                f"samples_per_prompt ({self.samples_per_prompt})"
            )


class Method(Protocol):
    model: FinetuneModel
    cfg: Any  # the method's config dataclass, with a `loop` section

    def sample(self, inputs: list, generator: torch.Generator) -> Rollout: ...

    def update(self, rollout: Rollout, rewards: torch.Tensor, generator: torch.Generator) -> dict:
        """rewards: (groups, M). Returns statistics for the round's log line."""

    def state_dict(self) -> dict:
        """Everything `update` has changed (trained weights, optimiser, running statistics),
        for `run`'s resumable checkpoints."""

    def load_state_dict(self, state: dict) -> None: ...

    def varying_accepts(self) -> str | None:
        """Why the number of samples `update` trains on can differ between ranks (they would
        then take different numbers of optimiser steps), naming the setting; None if it
        cannot."""


def run(
    method: Method,
    conditions: Sequence,
    reward: Reward,
    cfg: LoopConfig,
    *,
    model_input: Callable[[Any], Any] | None = None,
    log: str | Path | None = None,
    on_round: Callable[[dict], dict] | None = None,
    checkpoint: str | Path | None = None,
    checkpoint_every_s: float = 60.0,
) -> list[dict]:
    """Run rounds until `cfg.reward_budget` reward queries are spent; return the log rows.

    conditions: the training conditions, passed to the reward as they are (e.g. scenes.Prompt)
    and to `model.encode_condition` through `model_input` (e.g. `lambda p: p.text`).
    log: JSON-lines file that gets one row per round (`records.append_jsonl`).
    on_round: called with each finished round's row; what it returns (e.g. a held-out score)
    is merged into the row before it is logged.
    checkpoint: file for the loop's resumable state (the method's `state_dict`, both
    generators, the condition order, the budget spent and the rows so far), written
    atomically after a round once `checkpoint_every_s` seconds have passed since the last
    write, and always after the last round. If it exists and was written by the same method
    config and conditions, the run continues after its last round and takes the rounds an
    uninterrupted run would have taken; `log` is rewritten from the stored rows. The caller
    deletes it once the run's results are written.
    A row: round, reward_queries (so far), n_prompts, reward_mean/max/std (this round's
    training samples), sampler_nfe (network evaluations so far, a CFG pair counting as one),
    nfe_per_sample, sample_s, reward_s, train_s, elapsed_s, sample_flops and train_flops
    (this round, with count_flops), and the method's statistics (n_accepted, train_loss, ...).

    On several ranks (`distributed.world`; call it on every rank with the same arguments):
    rank r takes groups r, r + ranks, ... of each round's conditions; reward_queries,
    n_prompts, reward_* and sampler_nfe count all ranks' samples; the method's n_accepted
    and train_examples are summed over ranks, its other statistics averaged where they differ
    (`merge_stats`); timings and FLOPs are rank 0's. Only rank 0 (`is_writer`) shows the
    progress bar, calls `on_round` (so it must not call collectives: the other ranks are not
    there), writes `log` and the checkpoint; its rows alone carry on_round's columns. The
    checkpoint stores each rank's generators and is resumed only at the same number of ranks.
    prompts_per_round and reward_budget / samples_per_prompt must be multiples of the ranks
    (a ConfigError otherwise), so every round, the last one included, gives each rank the
    same number of groups and the ranks take the same number of optimiser steps.
    """
    if not conditions:
        raise ValueError("run: no training conditions")
    model, m = method.model, cfg.samples_per_prompt
    rank, size = world()
    check_ranks(method, cfg, size)
    device = next(model.network.parameters()).device
    g = torch.Generator().manual_seed(cfg.seed)
    # sample_diffusion draws step noise on the states' device, so its generator lives there
    g_sample = torch.Generator(device=device).manual_seed(rank_seed(cfg.seed + 1))
    # one process draws selection and training noise from `g` as well (as it always has); on
    # several ranks `g` must stay equal on all of them (it picks the rounds' conditions), so
    # each rank trains with its own generator
    g_train = g if size == 1 else torch.Generator().manual_seed(rank_seed(cfg.seed + 2))
    counter, order, rows, nfe, t0 = RewardCounter(reward, cfg.reward_budget), [], [], 0, time.time()
    fingerprint = state_fingerprint(method, conditions, size)
    if checkpoint and (state := resumable(checkpoint, fingerprint)):
        own = state["ranks"][rank] if size > 1 else state
        # on several ranks, each rank's own part of the method state over the shared weights
        method.load_state_dict({**state["method"], **own["method"]})
        g.set_state(state["generator"])
        g_sample.set_state(own["sample_generator"])
        torch.set_rng_state(own["torch_rng"])
        if size > 1:
            g_train.set_state(own["train_generator"])
        order, rows, nfe = state["order"], state["rows"], state["nfe"]
        counter.queries = state["queries"]
        t0 -= rows[-1]["elapsed_s"]
        if log and is_writer():
            Path(log).unlink(missing_ok=True)
            for row in rows:
                records.append_jsonl(log, row)
    if len(set(all_gather_objects(len(rows)))) > 1:  # e.g. a checkpoint one rank cannot see
        raise RuntimeError(f"{checkpoint}: the ranks resume after different rounds")
    saved_at = time.time()
    # quiet when not on a terminal (disable=None), as in train.fit, and off other ranks
    bar = tqdm(
        total=cfg.reward_budget,
        initial=counter.queries,
        desc="fine-tune (reward queries)",
        mininterval=5,
        disable=None if is_writer() else True,
    )
    while counter.remaining:
        groups = min(cfg.prompts_per_round, counter.remaining // m)
        picked = []
        for _ in range(groups):  # shuffled passes: every condition is seen once per pass
            order = order or torch.randperm(len(conditions), generator=g).tolist()
            picked.append(conditions[order.pop()])
        mine = picked[rank::size]  # this rank's groups: all of them on one process
        conds = [c for c in mine for _ in range(m)]
        inputs = [model_input(c) for c in conds] if model_input else list(conds)
        with _cost(cfg.count_flops) as sample_cost:
            roll = method.sample(inputs, g_sample)
            # e.g. diffusers' DDIM step with eta > 0 takes sqrt(1 - abar_prev - sigma^2), which
            # float32 can round below 0 from t = 999 (the cosine schedule at 5 steps does)
            if not torch.isfinite(roll.final).all():
                raise FloatingPointError(
                    f"round {len(rows)}: the sampler returned non-finite states"
                )
            with torch.no_grad():
                roll.decoded = model.decode(roll.final)
        tr = time.perf_counter()
        rewards = counter(roll.decoded, conds)
        reward_s = time.perf_counter() - tr
        if not (finite := torch.isfinite(rewards)).all():
            i = int((~finite).nonzero()[0])
            raise FloatingPointError(
                f"round {len(rows)}: the reward returned {int((~finite).sum())} non-finite "
                f"values of {len(rewards)} (the first, {rewards[i].item()}, for sample {i}, "
                f"condition {conds[i]!r}); a reward must score every sample (0 for invalid ones)"
            )
        with _cost(cfg.count_flops) as train_cost:
            stats = method.update(roll, rewards.view(len(mine), m), g_train)
        if size > 1:  # the row describes every rank's samples; the budget counts them all
            parts = all_gather_objects((rewards, stats))
            rewards = torch.cat([r for r, _ in parts])
            stats = merge_stats([s for _, s in parts], summed=("n_accepted", "train_examples"))
            counter.queries += len(rewards) - len(conds)
        nfe += roll.nfe * len(rewards)
        row = {
            "round": len(rows),
            "reward_queries": counter.queries,
            "n_prompts": groups,
            "reward_mean": rewards.mean().item(),
            "reward_max": rewards.max().item(),
            "reward_std": rewards.std(correction=0).item(),
            "sampler_nfe": nfe,
            "nfe_per_sample": roll.nfe,
            "sample_s": sample_cost["s"],
            "reward_s": reward_s,
            "train_s": train_cost["s"],
            "elapsed_s": time.time() - t0,
            **{
                f"{k}_flops": c["flops"]
                for k, c in (("sample", sample_cost), ("train", train_cost))
                if "flops" in c
            },
            **stats,
        }
        if on_round and is_writer():
            row.update(on_round(row))
        rows.append(row)
        if is_writer():
            logger.info(round_line(row, cfg.reward_budget))
        if log and is_writer():
            records.append_jsonl(log, row)
        # the writer's clock decides, for all ranks: saving gathers every rank's state
        if checkpoint and from_writer(
            not counter.remaining or time.time() - saved_at >= checkpoint_every_s
        ):
            save_state(
                checkpoint,
                fingerprint,
                method,
                g,
                g_sample,
                g_train,
                order,
                rows,
                nfe,
                counter.queries,
            )
            saved_at = time.time()
        bar.update(len(rewards))
        bar.set_postfix(reward=f"{row['reward_mean']:.3f}", refresh=False)
    bar.close()
    return rows


@contextmanager
def _cost(count_flops: bool):
    """Yields a dict that gets the block's wall seconds ("s") and, if asked, FLOPs."""
    out: dict = {}
    t0 = time.perf_counter()
    if count_flops:
        with flops.counter() as counter:
            yield out
        out["flops"] = int(counter.get_total_flops())
    else:
        yield out
    out["s"] = time.perf_counter() - t0


def round_line(row: dict, budget: int) -> str:
    """A round's one line in the job log: budget spent, reward, time, what was accepted."""
    extra = "".join(
        f", {k} {row[k]:.4g}"
        for k in ("n_accepted", "accepted_reward_mean", "train_loss", "policy_loss", "approx_kl")
        if k in row
    )
    return (
        f"round {row['round']}: {row['reward_queries']}/{budget} reward queries, reward mean "
        f"{row['reward_mean']:.4f} (max {row['reward_max']:.4f}), {row['elapsed_s']:.1f} s"
        f"{extra}"
    )
