"""A toy2d fine-tuning run's task side (`finetuning.task.Session`): one unconditional
"condition", the bump reward, evaluation on `evaluate.samples` points from the evaluation
sampler (the same noise for every run at a seed), and, for the base run, the exact target laws
of every run (`targets`), written beside its points for the table to measure against."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from graftbench.finetuning.build import sample_final
from graftbench.finetuning.task import Evaluation, RunInputs, base_samples
from graftbench.tasks.toy2d.config import Toy2dConfig
from graftbench.tasks.toy2d.data import bump, centres, off_mode_share, reward_centre

CONDITION = "ring"  # the task is unconditional: every sample gets this placeholder
POINTS, TARGETS = "points.npz", "targets.npz"


@dataclass
class Toy2dEvaluation(Evaluation):
    points: np.ndarray | None = None
    targets: dict | None = None  # the base run's: run name -> exact target samples


class Toy2dSession:
    evaluator, dedup_key = None, None
    conditions = [CONDITION]

    def __init__(self, cfg: Toy2dConfig, base: Path | None):
        self.cfg, self.base = cfg, base
        self.r = bump(cfg.data, cfg.reward)
        if base is not None and not (base / POINTS).exists():
            raise FileNotFoundError(f"{base / POINTS}: the base run's points; evaluate it first")

    def model_input(self, condition):
        return condition

    def reward(self):
        return self.r

    def _sample(self, segments, model, n: int, seed: int, best_of: int) -> torch.Tensor:
        ev = self.cfg.evaluate
        conds = [CONDITION] * n
        return sample_final(
            model,
            segments,
            conds,
            num_steps=ev.num_steps,
            batch=n,
            seed=seed + ev.seed_offset,
            eta=ev.eta,
            best_of=best_of,
            reward=self.r,
            conditions=conds,
        ).cpu()

    def evaluate(self, segments, model, seed: int, best_of: int = 1) -> Toy2dEvaluation:
        x = self._sample(segments, model, self.cfg.evaluate.samples, seed, best_of)
        nearest = torch.cdist(x, centres(self.cfg.data)).argmin(1)
        rewarded = torch.cdist(
            reward_centre(self.cfg.data, self.cfg.reward)[None], centres(self.cfg.data)
        ).argmin()
        metrics = {
            "reward": self.r(x).mean().item(),
            "rewarded_mode_share": (nearest == rewarded).float().mean().item(),
            "off_mode_share": off_mode_share(self.cfg.data, x),
            "n": len(x),
        }
        targets = None
        if self.base is None and best_of == 1:  # the base run: every run's exact target
            from graftbench.tasks.toy2d.targets import target_samples

            targets = {k: v.numpy() for k, v in target_samples(model, self.cfg, seed).items()}
        return Toy2dEvaluation(metrics, x.numpy(), targets)

    def curve(self, segments, model, seed: int, best_of: int = 1) -> float:
        x = self._sample(segments, model, self.cfg.evaluate.curve_samples, seed, best_of)
        return self.r(x).mean().item()

    def compare(self, ev: Toy2dEvaluation) -> dict:
        """drift: RMS distance from the base's point of the same noise."""
        if self.base is None:
            return {"drift": 0.0}
        base = base_samples(self.base, POINTS, "points", ev.points)
        return {"drift": float(np.sqrt(((ev.points - base) ** 2).sum(1).mean()))}

    def write(self, out: Path, ev: Toy2dEvaluation) -> None:
        np.savez(out / POINTS, points=ev.points)
        if ev.targets is not None:
            np.savez(out / TARGETS, **ev.targets)

    def close(self) -> None:
        pass


class Toy2dFinetune:
    """The toy2d task as `finetuning.runner` sees it (`finetuning.task.FinetuneTask`)."""

    name = "toy2d"
    inputs: tuple[str, ...] = ()
    probe_condition = CONDITION

    def load_model(self, path: Path, device: str):
        from graftbench.tasks.toy2d.model import Toy2dAdapter

        return Toy2dAdapter.load(path, device)

    def open(self, cfg: Toy2dConfig, inputs: RunInputs, out: Path, device: str, base):
        return Toy2dSession(cfg, base)

    def describe(self, m: dict) -> str:
        return (
            f"{m['run']} seed {m['seed']}: reward {m['reward']:.3f}, rewarded-mode share "
            f"{m['rewarded_mode_share']:.2f}, {m['reward_queries']} reward queries, "
            f"{m['wall_s']:.0f} s"
        )
