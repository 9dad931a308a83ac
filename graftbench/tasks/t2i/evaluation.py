"""The text-to-image task's side of a fine-tuning run (`finetuning.task.Session`): the
training prompts and verifier (or scorer) reward, the evaluation on held-out and training
prompts, the drift and paired training-reward change against the base run, and the files.

Every run is evaluated by one sampler (deterministic DDIM, the same noise per seed for every
method) on held-out prompts that fine-tuning never saw and on the prompts it drew from (the
"training reward", shown beside the held-out one so that reward hacking shows).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from graftbench import records
from graftbench.config import InputError
from graftbench.finetuning.build import sample_final
from graftbench.finetuning.task import Evaluation, base_samples
from graftbench.tasks.t2i.config import EvaluateConfig, T2IConfig
from graftbench.tasks.t2i.prompts import eval_prompts, finetune_prompts
from graftbench.tasks.t2i.scenes import Prompt


@dataclass
class T2IEvaluation(Evaluation):
    images: np.ndarray | None = None  # (n, H, W, 3) uint8: held-out first, then training
    scores: np.ndarray | None = None  # (n,) each image's score, in the same order


def sample_images(
    segments,
    model,
    prompts: list[Prompt],
    ev: EvaluateConfig,
    seed: int,
    best_of: int = 1,
    reward=None,
) -> np.ndarray:
    """Images (n, H, W, 3) uint8 for `prompts` from the evaluation sampler (best_of, reward:
    the best of that many draws by `reward`, as `sample_final`)."""
    final = sample_final(
        model,
        segments,
        [p.text for p in prompts],
        num_steps=ev.num_steps,
        eta=ev.eta,
        batch=ev.batch_size,
        seed=seed,
        best_of=best_of,
        reward=reward,
        conditions=prompts,
    )
    # decoded a sampler batch at a time and kept as uint8 on the host: at 512 px a float32
    # image is 3 MB, and an SD evaluation holds thousands
    with torch.no_grad():
        parts = [
            (model.decode(z).clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu()
            for z in final.split(ev.batch_size)
        ]
    return torch.cat(parts).numpy()


def diversity(images: np.ndarray, per_prompt: int) -> float:
    """Mean pixel RMS distance (in [0, 1] units) between the images drawn for the same prompt,
    over all pairs and prompts; images are grouped prompt-major. A model collapsing onto one
    image per prompt scores 0. NaN with one image per prompt."""
    if per_prompt < 2:
        return float("nan")
    x = images.reshape(-1, per_prompt, images[0].size).astype(np.float64) / 255
    d = [
        np.sqrt(((x[:, i] - x[:, j]) ** 2).mean(1))
        for i in range(per_prompt)
        for j in range(i + 1, per_prompt)
    ]
    return float(np.mean(d))


def evaluated(cfg: T2IConfig) -> list[tuple[list, int]]:
    """(prompts, images per prompt) of the held-out and the training-prompt evaluation."""
    sets, ev = eval_prompts(cfg), cfg.evaluate
    return [(sets["heldout"], ev.samples_per_prompt), (sets["train"], ev.train_samples_per_prompt)]


def paired_change(scores: np.ndarray, base_scores: np.ndarray, n: int) -> dict:
    """The training reward's change from the base: the mean of the last n images' score minus
    the base's for the same prompt and evaluation noise (deterministic DDIM), and the 95% CI
    of that mean over the n pairs (normal; NaN for one pair)."""
    d = scores[-n:] - base_scores[-n:]
    ci = 1.96 * d.std(ddof=1) / np.sqrt(n) if n > 1 else float("nan")
    return {"train_change": float(d.mean()), "train_change_ci": float(ci)}


def base_scores(path: Path, cfg: T2IConfig) -> np.ndarray:
    """The base run's per-image scores, which train_change pairs with; an InputError unless
    the file has as many as this config's evaluation makes (its images, which drift compares
    with, are read after fine-tuning: at SD scale they take a gigabyte)."""
    ev = cfg.evaluate
    n = sum(len(prompts) * k for prompts, k in evaluated(cfg))
    with np.load(path) as saved:
        scores = saved.get("scores")
    if scores is None or len(scores) != n:
        got = "no per-image scores" if scores is None else f"{len(scores)} scored images"
        raise InputError(
            f"{path}: the base evaluation has {got}, this config's evaluation "
            f"makes {n} (evaluate.samples_per_prompt {ev.samples_per_prompt}, "
            f"train_samples_per_prompt {ev.train_samples_per_prompt}); rerun the "
            "base evaluation"
        )
    return scores


class T2ISession:
    """One t2i run: one judge (the verifier, or a scorer process) for the loop and the
    evaluation."""

    dedup_key = None

    def __init__(self, cfg: T2IConfig, out: Path, base: Path | None):
        from graftbench.tasks.t2i.judge import open_judge

        self.cfg, self.base = cfg, base
        self.base_scores = None if base is None else base_scores(base / "images.npz", cfg)
        self.conditions = finetune_prompts(cfg)
        self.judge = open_judge(cfg.scorer, cfg.verifier, out / "scorer.log")
        self.evaluator = self.judge.name

    def model_input(self, prompt: Prompt) -> str:
        return prompt.text

    def reward(self):
        from graftbench.methods.reward import image_reward

        return image_reward(self.judge.reward())

    def evaluate(self, segments, model, seed: int, best_of: int = 1) -> T2IEvaluation:
        """Held-out and training-prompt metrics plus diversity, with the images (held-out
        first, each prompt-major with samples_per_prompt images, then training, with
        train_samples_per_prompt) and each image's score."""
        ev, sets = self.cfg.evaluate, eval_prompts(self.cfg)
        k = ev.samples_per_prompt
        held, train = ([p for p in ps for _ in range(n)] for ps, n in evaluated(self.cfg))
        images = sample_images(
            segments, model, held + train, ev, seed + ev.seed_offset, best_of, self.reward()
        )
        held_metrics, held_scores = self.judge.score(images[: len(held)], held, "heldout")
        train_metrics, train_scores = self.judge.score(images[len(held) :], train, "train")
        metrics = {
            **held_metrics,
            **train_metrics,
            "diversity": diversity(images[: len(held)], k),
            "n_heldout_prompts": len(sets["heldout"]),
            "n_train_prompts": len(sets["train"]),
            "samples_per_prompt": k,
            "train_samples_per_prompt": ev.train_samples_per_prompt,
        }
        return T2IEvaluation(metrics, images, np.concatenate([held_scores, train_scores]))

    def curve(self, segments, model, seed: int, best_of: int = 1) -> float:
        """Mean score on the curve's held-out subset, one image per prompt."""
        prompts, ev = eval_prompts(self.cfg)["curve"], self.cfg.evaluate
        images = sample_images(
            segments, model, prompts, ev, seed + ev.seed_offset, best_of, self.reward()
        )
        return self.judge.score(images, prompts, "curve")[0]["curve_reward"]

    def compare(self, ev: T2IEvaluation) -> dict:
        """drift: pixel RMS from the base's images on the same noise; train_change: the
        paired training-reward change (`paired_change`)."""
        if self.base is None:
            return {"drift": 0.0, "train_change": 0.0, "train_change_ci": 0.0}
        base = base_samples(self.base, "images.npz", "images", ev.images)
        drift = float(np.sqrt(((ev.images / 255 - base / 255) ** 2).mean()))
        train_prompts, k_train = evaluated(self.cfg)[1]
        change = paired_change(ev.scores, self.base_scores, len(train_prompts) * k_train)
        return {"drift": drift, **change}

    def write(self, out: Path, ev: T2IEvaluation) -> None:
        """images.npz (images, scores) and grid.png of the first held-out images."""
        with records.atomic_path(out / "images.npz") as tmp, open(tmp, "wb") as f:
            np.savez_compressed(f, images=ev.images, scores=ev.scores)
        k = self.cfg.evaluate.samples_per_prompt
        n = len(eval_prompts(self.cfg)["heldout"]) * k
        records.save_image_grid(out / "grid.png", ev.images[: min(n, 32)], ncol=k * 4)

    def close(self) -> None:
        self.judge.close()
