"""What scores the text-to-image task's images: the reward the fine-tuning loop optimises and
the metrics every run is evaluated with, from one source.

- `VerifierJudge`: the programmatic verifier of the rendered-scene grammar (cpu and smoke
  profiles): the score (fraction of the prompt's statements that hold), accuracy (all hold,
  GenEval's role) and accuracy per category.
- `ScorerJudge`: an external scorer process (graftbench/tasks/t2i/scorer.py, e.g. VQAScore in its own
  environment) for any prompt, e.g. a benchmark's prompt set (paper profile): the score and
  its mean per category; a scorer gives no accuracy.

One judge serves a whole job, so a scorer process loads its weights once. Both record their
name and version (`name`), which every run writes into its metrics.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from graftbench.tasks.t2i.verifier import VerifierConfig, verifier_reward, verify


def _by_category(prompts: Sequence, values: np.ndarray, prefix: str) -> dict:
    out = {}
    for cat in dict.fromkeys(p.category for p in prompts):
        hits = [v for v, p in zip(values, prompts, strict=True) if p.category == cat]
        out[f"{prefix}_{cat}"] = float(np.mean(hits))
    return out


class VerifierJudge:
    name = "verifier"

    def __init__(self, cfg: VerifierConfig):
        self.cfg = cfg

    def reward(self):
        return verifier_reward(self.cfg)

    def score(self, images: np.ndarray, prompts: Sequence, name: str) -> tuple[dict, np.ndarray]:
        """({name}_reward (mean score), {name}_accuracy and {name}_acc_{category}; the
        score of each image (n,))."""
        verdicts = [verify(img, p, self.cfg) for img, p in zip(images, prompts, strict=True)]
        correct = np.asarray([v.correct for v in verdicts], dtype=np.float64)
        scores = np.asarray([v.score for v in verdicts], dtype=np.float64)
        return {
            f"{name}_reward": float(scores.mean()),
            f"{name}_accuracy": float(correct.mean()),
            **_by_category(prompts, correct, f"{name}_acc"),
        }, scores

    def close(self) -> None:
        pass


class ScorerJudge:
    """An external scorer process started once; `close()` ends it."""

    def __init__(self, command: Sequence[str], log: Path):
        from graftbench.distributed import rank_gpu_env, world
        from graftbench.tasks.t2i.scorer import ScorerProcess

        rank = world()[0]  # under torchrun every rank scores its own samples, on its own GPU
        log = log if rank == 0 else log.with_name(f"{log.stem}.rank{rank}{log.suffix}")
        self.process = ScorerProcess(command, log, env=rank_gpu_env())
        self.name = f"{self.process.name} {self.process.version}"

    def reward(self):
        return self.process.reward()

    def score(self, images: np.ndarray, prompts: Sequence, name: str) -> tuple[dict, np.ndarray]:
        """({name}_reward (mean score) and {name}_reward_{category} (mean per category); the
        score of each image (n,))."""
        scores = self.process.score(images, [p.text for p in prompts])
        return {
            f"{name}_reward": float(scores.mean()),
            **_by_category(prompts, scores, f"{name}_reward"),
        }, scores

    def close(self) -> None:
        self.process.close()


def open_judge(scorer: Sequence[str], verifier: VerifierConfig, log: Path):
    """The scorer process of command `scorer` (its stderr to `log`), or the verifier when the
    command is empty. Close it when done (both have `close`)."""
    return ScorerJudge(scorer, log) if scorer else VerifierJudge(verifier)
