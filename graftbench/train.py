"""The one training loop: optimiser steps over a loss callable, with EMA, periodic atomic
checkpoints (model, EMA, optimiser and RNG state, plus the config) and resume.

A run killed at any point and restarted with the same arguments continues from its last
checkpoint and, because the data and noise RNG state is checkpointed too, takes the same
steps an uninterrupted run would have taken.

Optionally (`Validation`) the EMA weights are scored on held-out data every few steps, the
curve is logged, and training stops early once the held-out loss has stopped falling,
keeping the best EMA weights seen.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from tqdm.auto import tqdm

from graftbench import records
from graftbench.config import Count, Natural, NonNegative, Positive, Share

if TYPE_CHECKING:
    from graftbench.models.base import FinetuneModel


@dataclass
class TrainConfig:
    steps: Count = 4000  # optimiser steps
    batch_size: Count = 64  # examples per step
    lr: Positive = 2e-3  # AdamW peak learning rate (linear warm-up, cosine decay to 10%)
    warmup: Natural = 100  # warm-up steps
    weight_decay: NonNegative = 0.0  # AdamW weight decay
    grad_clip: Positive = 1.0  # max global gradient norm
    ema_decay: Share = 0.999  # decay of the parameter EMA that is evaluated (0 = no EMA)
    checkpoint_every: Count = 500  # steps between resumable checkpoints
    seed: int = 0  # initialisation, batch order and noise seed


@dataclass
class Validation:
    """Held-out scoring for `fit`: loss(ema_network) -> float, lower is better, computed every
    `every` steps (and at the last step). Training stops after `patience` evaluations in a
    row without a relative improvement of `min_delta` (patience 0: never stop early); the
    weights returned and saved are then the EMA at the best evaluation. The loss must draw
    its own fixed noise, so evaluations compare like with like and training's RNG is
    untouched. As Keras' EarlyStopping(restore_best_weights=True), a fall under min_delta
    neither resets the patience nor replaces the kept weights. Each evaluation appends
    {step, train_loss (mean since the last one), heldout_loss, best_step, lr, elapsed_s}
    to `log`."""

    loss: Callable[[torch.nn.Module], float]
    every: int
    patience: int = 0
    min_delta: float = 0.0
    log: Path | None = None
    best: dict = field(default_factory=dict)  # filled by fit: step, loss, stopped_at


def fit(
    network: torch.nn.Module,
    loss_fn: Callable[[int, torch.Generator], torch.Tensor],
    cfg: TrainConfig,
    out: str | Path,
    config: dict,
    log: str | Path | None = None,
    validation: Validation | None = None,
    *,
    kind: str,
) -> torch.nn.Module:
    """Train `network` to minimise loss_fn(step, generator); return the EMA copy (with
    `validation`: the EMA copy at its best held-out evaluation, see `Validation`).

    loss_fn draws its own batch and noise from the generator it is given (so resuming
    restores them). The final checkpoint at `out` holds {"model": EMA weights, "config"}
    and is of `kind` (what the weights are, e.g. "molecule model"); the resumable one
    beside it is a "training state".

    The network trains where it is (the caller moves it); the generator stays on the CPU,
    so a run draws the same batches and noise on every device, and loss_fn moves them to
    the network's device. The final weights are saved as CPU tensors, and the checkpoint
    records the device they were trained on.
    """
    out = Path(out)
    device = next(network.parameters()).device
    partial = out.with_name(out.name + ".partial")
    opt = torch.optim.AdamW(network.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(cfg))
    ema = copy.deepcopy(network).requires_grad_(False)
    g = torch.Generator().manual_seed(cfg.seed)
    start, window, best_state = 0, [], None
    val = validation
    if partial.exists():
        ckpt = records.load_checkpoint(partial, kind="training state")
        network.load_state_dict(ckpt["model"])
        ema.load_state_dict(ckpt["ema"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        g.set_state(ckpt["generator"])
        torch.set_rng_state(ckpt["torch_rng"])
        if "cuda_rng" in ckpt:  # dropout on a GPU draws from the device's own generator
            torch.cuda.set_rng_state(ckpt["cuda_rng"], device)
        start = ckpt["step"]
        if val is not None and "best" in ckpt:
            val.best, best_state = ckpt["best"], ckpt["best_ema"]
    t0 = time.time()
    bar = tqdm(range(start, cfg.steps), desc=f"train {out.stem}", mininterval=5, disable=None)
    for step in bar:
        loss = loss_fn(step, g)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"train step {step}: loss is {loss.item()}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(network.parameters(), cfg.grad_clip)
        opt.step()
        sched.step()
        _ema_update(ema, network, cfg.ema_decay if step >= cfg.warmup else 0.0)
        done = step + 1
        if val is not None:
            window.append(loss.item())
        if val is not None and (done % val.every == 0 or done == cfg.steps):
            if _validate(val, ema, done, window, sched.get_last_lr()[0], time.time() - t0):
                best_state = {k: v.detach().clone() for k, v in ema.state_dict().items()}
            window = []
        if log and (done % 50 == 0 or done == cfg.steps):
            records.append_jsonl(
                log,
                {
                    "step": done,
                    "loss": loss.item(),
                    "lr": sched.get_last_lr()[0],
                    "elapsed_s": time.time() - t0,
                },
            )
        if done % cfg.checkpoint_every == 0 and done < cfg.steps:
            # saved as CPU copies (load_checkpoint gives CPU tensors); load_state_dict moves
            # them back
            state = {
                "model": network.state_dict(),
                "ema": ema.state_dict(),
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(),
                "generator": g.get_state(),
                "torch_rng": torch.get_rng_state(),
                "step": done,
            }
            if device.type == "cuda":
                state["cuda_rng"] = torch.cuda.get_rng_state(device)
            if val is not None and best_state is not None:
                state |= {"best": val.best, "best_ema": best_state}
            records.save_checkpoint(partial, state, config, kind="training state")
        if val is not None and val.patience and val.best.get("bad", 0) >= val.patience:
            val.best["stopped_at"] = done
            break
    if best_state is not None:
        ema.load_state_dict(best_state)
    # CPU tensors, so the file loads anywhere without map_location (.cpu() is a no-op on the
    # CPU); set in place, so the state dict keeps its _metadata (module versions)
    weights = ema.state_dict()
    for k, v in weights.items():
        weights[k] = v.cpu()
    steps = val.best.get("step", cfg.steps) if val is not None else cfg.steps
    final = {"model": weights, "steps": steps, "device": str(device)}
    records.save_checkpoint(out, final, config, kind=kind)
    partial.unlink(missing_ok=True)
    return ema


def fit_model(
    model: FinetuneModel,
    x0: torch.Tensor,
    cond: torch.Tensor | None,
    cfg: TrainConfig,
    out: str | Path,
    config: dict,
    log: str | Path | None = None,
    *,
    kind: str,
) -> torch.nn.Module:
    """Pre-train `model` with its own `training_loss` on data x0 (n, *sample_shape) whose
    examples have the encoded conditions cond (n, ...) (None: unconditional); `fit` with
    batches of cfg.batch_size drawn uniformly, saving a checkpoint of `kind`. x0 and cond stay where they are (the CPU);
    each batch moves to the model's device."""
    device = next(model.network.parameters()).device

    def loss_fn(step: int, g: torch.Generator) -> torch.Tensor:
        idx = torch.randint(len(x0), (cfg.batch_size,), generator=g)
        c = None if cond is None else cond[idx].to(device)
        # the loss draws t and noise on fit's CPU generator and moves them to x0's device
        return model.training_loss(x0[idx].to(device), c, g)

    return fit(model.network, loss_fn, cfg, out, config, log, kind=kind)


@torch.no_grad()
def _validate(
    val: Validation, ema: torch.nn.Module, step: int, window: list, lr: float, elapsed: float
) -> bool:
    """Score the EMA, log the point, update val.best; True when this is the best so far."""
    was_training = ema.training
    held = val.loss(ema.eval())
    ema.train(was_training)
    best = val.best.get("loss", math.inf)
    improved = held < best * (1 - val.min_delta) if math.isfinite(best) else True
    if improved:
        val.best.update(step=step, loss=held, bad=0)
    else:
        val.best["bad"] = val.best.get("bad", 0) + 1
    if val.log:
        records.append_jsonl(
            val.log,
            {
                "step": step,
                "train_loss": sum(window) / max(1, len(window)),
                "heldout_loss": held,
                "best_step": val.best["step"],
                "lr": lr,
                "elapsed_s": elapsed,
            },
        )
    return improved


def _lr_lambda(cfg: TrainConfig):
    def f(step: int) -> float:
        if step < cfg.warmup:
            return (step + 1) / cfg.warmup
        progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    return f


# diffusers.training_utils.EMAModel does the same; a lerp over parameters keeps the
# checkpoint a plain state dict that any UNet2DModel loads.
@torch.no_grad()
def _ema_update(ema: torch.nn.Module, net: torch.nn.Module, decay: float) -> None:
    for pe, p in zip(ema.parameters(), net.parameters(), strict=True):
        pe.lerp_(p.detach(), 1 - decay)
    for be, b in zip(ema.buffers(), net.buffers(), strict=True):
        be.copy_(b)
