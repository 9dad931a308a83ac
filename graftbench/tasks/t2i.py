"""Compositional text-to-image: GRAFT, P-GRAFT and DDPO against the base at equal reward queries.

Data flow (one function per workflow rule):
    pretrain  -> model.pt (EMA weights + config), pretrain.jsonl
    evaluate  -> base/seed{n}/: eval.json, metrics.json, images.npz, grid.png
    finetune  -> {run}/seed{n}/: rounds.jsonl, model.pt, eval.json, metrics.json, images.npz,
                 grid.png; run is graft, ddpo or pgraft{N_I}
    aggregate -> tables/t2i.{csv,md}; figures t2i_reward_vs_queries.png, t2i_pgraft_vs_ni.png,
                 t2i_samples.png

Every method fine-tunes the same pre-trained model on the training prompts, spending the same
number of verifier queries; all are evaluated by one sampler (deterministic DDIM, the same
noise per seed for every method) on held-out prompts that fine-tuning never saw and on a
subset of the training prompts (the "training reward", shown beside the held-out one so that
reward hacking shows). P-GRAFT is evaluated the way it samples: fine-tuned model down to t_I,
base after.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
import torch

from graftbench import records
from graftbench.config import ConfigError, InputError, to_dict
from graftbench.distributed import is_writer
from graftbench.methods.ddpo import DDPOConfig
from graftbench.methods.graft import GraftConfig
from graftbench.methods.pgraft import PGraftSweep
from graftbench.models.text2image_config import StableDiffusionConfig, Text2ImageConfig
from graftbench.t2i.scenes import Prompt, SceneConfig, split_prompts
from graftbench.t2i.verifier import VerifierConfig
from graftbench.tasks.finetuning import (
    base_record,
    build_method,
    check_methods,
    eval_segments,
    finish,
    plain_factory,
    run_names,
    run_record,
    run_with_curve,
)
from graftbench.train import TrainConfig

# diffusers and transformers take ~8 s to import: the model and sampler modules are imported
# inside the functions that need them, so aggregation starts fast.

Method = Literal["base", "graft", "pgraft", "ddpo"]


@dataclass
class PromptsConfig:
    source: Literal["scenes", "genai-bench", "geneval", "t2i-compbench"] = "scenes"  # scenes:
    # the rendered-scene grammar, split by `scenes`; otherwise a benchmark's prompt set read
    # from `path` (graftbench/t2i/prompt_sets.py) and split here
    path: str = ""  # the prompt set's file (T2I-CompBench++: its folder); unused for scenes
    heldout_fraction: float = 0.2  # prompt sets: share of each category held out from
    # fine-tuning (evaluated only)
    split_seed: int = 0  # prompt sets: seed of that split

    def __post_init__(self):
        if self.source != "scenes" and not self.path:
            raise ConfigError(
                f"t2i.prompts.path: empty; prompts from {self.source} are read "
                "from a file you supply (README, 'Paper scale')"
            )
        if not 0 < self.heldout_fraction < 1:
            raise ConfigError(
                f"t2i.prompts.heldout_fraction: {self.heldout_fraction} not in (0, 1)"
            )


@dataclass
class EvaluateConfig:
    num_steps: int = 10  # DDIM steps of the evaluation sampler, every method alike
    eta: float = 0.0  # 0: deterministic DDIM, so one noise gives comparable images across
    # methods (drift is measured on them)
    samples_per_prompt: int = 2  # images per held-out prompt (diversity compares them)
    train_samples_per_prompt: int = 2  # images per fine-tuning prompt (the training reward;
    # its change from the base is paired image by image, so more images resolve smaller
    # changes: 64 images give a 95% CI of about +-0.03 on the verifier's score)
    batch_size: int = 64  # images per sampler call (memory, not maths)
    curve_prompts: int = 32  # held-out prompts (one image each) scored after fine-tuning
    # rounds, for the reward-against-queries curve
    curve_every: int = 1  # rounds between curve points (the last round always gets one)
    seed_offset: int = 1000  # evaluation noise seed = run seed + this (apart from training's)
    MOVED: ClassVar[dict[str, str]] = {
        "n_train_prompts": "t2i.finetune_prompts (the training reward is scored on the prompts "
        "fine-tuning drew from)"
    }

    def __post_init__(self):
        for key in (
            "num_steps",
            "samples_per_prompt",
            "train_samples_per_prompt",
            "batch_size",
            "curve_prompts",
            "curve_every",
        ):
            if getattr(self, key) < 1:
                raise ConfigError(f"t2i.evaluate.{key}: {getattr(self, key)} must be at least 1")
        if self.eta < 0:
            raise ConfigError(f"t2i.evaluate.eta: {self.eta} must be >= 0")


@dataclass
class T2IConfig:
    methods: list[Method] = field(default_factory=lambda: ["base", "graft", "pgraft", "ddpo"])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])  # fine-tuning + evaluation seeds
    scenes: SceneConfig = field(default_factory=SceneConfig)  # grammar, split, renderer
    finetune_prompts: int = 32  # training prompts the fine-tuning loop draws from: a fixed
    # seeded subset of the training split (scenes.split_seed), the same for every method and
    # seed; 0 = the whole split. The training reward is scored on exactly these prompts.
    prompts: PromptsConfig = field(default_factory=PromptsConfig)  # where prompts come from
    verifier: VerifierConfig = field(default_factory=VerifierConfig)  # the reward and metric
    # of scene prompts (when `scorer` is empty)
    scorer: list[str] = field(default_factory=list)  # command of an external scorer process
    # (graftbench/scorer.py; e.g. [/opt/t2v/bin/python, scorers/vqascore.py, --cache-dir,
    # /data/hf]) that gives the reward and metrics instead of the verifier; empty: the verifier
    model: Text2ImageConfig = field(default_factory=Text2ImageConfig)  # the base model
    pretrain: TrainConfig = field(default_factory=TrainConfig)  # its pre-training
    stable_diffusion: StableDiffusionConfig | None = None  # set: the base is this SD-family
    # folder instead (`model` and `pretrain` unused; `pretrain` only checks the folder)
    graft: GraftConfig = field(default_factory=GraftConfig)  # loop.seed: replaced by the run's
    pgraft: PGraftSweep = field(default_factory=PGraftSweep)
    ddpo: DDPOConfig = field(default_factory=DDPOConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)

    def __post_init__(self):
        if self.finetune_prompts < 0:
            raise ConfigError(
                f"t2i.finetune_prompts: {self.finetune_prompts} must be >= 0 "
                "(0 = every training prompt)"
            )
        check_methods(self, "t2i")
        if self.prompts.source != "scenes" and not self.scorer:
            raise ConfigError(
                f"t2i.scorer: empty, but the verifier reads scene prompts only; "
                f"prompts from {self.prompts.source} need a scorer command, e.g. "
                "VQAScore's (README, 'Paper scale')"
            )
        if self.stable_diffusion is not None and not self.stable_diffusion.path:
            raise ConfigError(
                "t2i.stable_diffusion.path: empty; give the local diffusers "
                "folder of the base (README, 'Paper scale')"
            )

    def runs(self) -> list[str]:
        """Run names, in table order: base, graft, pgraft{N_I}..., ddpo."""
        return run_names(self)


# ---------------------------------------------------------------------------------- prompts


def _subset(prompts: list[Prompt], n: int, seed: int) -> list[Prompt]:
    """n prompts drawn without replacement (all if n >= len), in their original order."""
    if n >= len(prompts):
        return list(prompts)
    idx = np.random.default_rng(seed).choice(len(prompts), n, replace=False)
    return [prompts[i] for i in sorted(idx)]


def prompt_split(cfg: T2IConfig) -> tuple[list, list]:
    """(training, held-out) prompts: the scene grammar's split, or the prompt set's. Both kinds
    of prompt have `.text` and `.category`."""
    if cfg.prompts.source == "scenes":
        split = split_prompts(cfg.scenes)
        return list(split.train), list(split.heldout)
    from graftbench.t2i.prompt_sets import load_prompt_set, split_prompt_set

    p = cfg.prompts
    return split_prompt_set(load_prompt_set(p.source, p.path), p.heldout_fraction, p.split_seed)


def _split_seed(cfg: T2IConfig) -> int:
    return cfg.scenes.split_seed if cfg.prompts.source == "scenes" else cfg.prompts.split_seed


def finetune_prompts(cfg: T2IConfig) -> list:
    """The training prompts every fine-tuning run draws from (`finetune_prompts` of them)."""
    train = prompt_split(cfg)[0]
    return _subset(train, cfg.finetune_prompts or len(train), _split_seed(cfg))


def eval_prompts(cfg: T2IConfig) -> dict[str, list]:
    """The prompt sets every run is evaluated on: all held-out prompts, the fine-tuning
    prompts (the training reward), and the held-out subset of the reward-against-queries
    curve."""
    held = prompt_split(cfg)[1]
    return {
        "heldout": held,
        "train": finetune_prompts(cfg),
        "curve": _subset(held, cfg.evaluate.curve_prompts, _split_seed(cfg) + 1),
    }


# --------------------------------------------------------------------------------- sampling


@torch.no_grad()
def sample_images(
    segments, model, prompts: list[Prompt], ev: EvaluateConfig, seed: int
) -> np.ndarray:
    """Images (n, H, W, 3) uint8 for `prompts` from the evaluation sampler; segments as in
    `loop.sample_segments` (one for a plain model, two for P-GRAFT's stitching)."""
    from graftbench.methods.loop import LoopConfig, sample_segments

    device = next(model.network.parameters()).device
    loop = LoopConfig(num_steps=ev.num_steps, eta=ev.eta, sample_batch=ev.batch_size)
    g = torch.Generator(device=device).manual_seed(seed)
    roll = sample_segments(
        model,
        segments,
        model.scheduler("ddim"),
        [p.text for p in prompts],
        loop,
        g,
        keep={ev.num_steps},
    )
    # decoded a sampler batch at a time and kept as uint8 on the host: at 512 px a float32
    # image is 3 MB, and an SD evaluation holds thousands
    parts = [
        (model.decode(z).clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu()
        for z in roll.final.split(ev.batch_size)
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


def _evaluated(cfg: T2IConfig) -> list[tuple[list, int]]:
    """(prompts, images per prompt) of the held-out and the training-prompt evaluation."""
    sets, ev = eval_prompts(cfg), cfg.evaluate
    return [(sets["heldout"], ev.samples_per_prompt), (sets["train"], ev.train_samples_per_prompt)]


def evaluation(
    segments, model, cfg: T2IConfig, judge, seed: int
) -> tuple[dict, np.ndarray, np.ndarray]:
    """Held-out and training-prompt metrics plus diversity; returns them with the images
    (held-out first, each prompt-major with samples_per_prompt images, then training, with
    train_samples_per_prompt) and each image's score (n,), in the same order."""
    ev, sets = cfg.evaluate, eval_prompts(cfg)
    k = ev.samples_per_prompt
    held, train = ([p for p in prompts for _ in range(n)] for prompts, n in _evaluated(cfg))
    images = sample_images(segments, model, held + train, ev, seed + ev.seed_offset)
    held_metrics, held_scores = judge.score(images[: len(held)], held, "heldout")
    train_metrics, train_scores = judge.score(images[len(held) :], train, "train")
    out = {
        **held_metrics,
        **train_metrics,
        "diversity": diversity(images[: len(held)], k),
        "n_heldout_prompts": len(sets["heldout"]),
        "n_train_prompts": len(sets["train"]),
        "samples_per_prompt": k,
        "train_samples_per_prompt": ev.train_samples_per_prompt,
    }
    return out, images, np.concatenate([held_scores, train_scores])


def paired_change(scores: np.ndarray, base_scores: np.ndarray, n: int) -> dict:
    """The training reward's change from the base: the mean of the last n images' score minus
    the base's for the same prompt and evaluation noise (deterministic DDIM), and the 95% CI
    of that mean over the n pairs (normal; NaN for one pair)."""
    d = scores[-n:] - base_scores[-n:]
    ci = 1.96 * d.std(ddof=1) / np.sqrt(n) if n > 1 else float("nan")
    return {"train_change": float(d.mean()), "train_change_ci": float(ci)}


def curve_point(segments, model, cfg: T2IConfig, judge, seed: int) -> float:
    """Mean score on the curve's held-out subset, one image per prompt."""
    prompts = eval_prompts(cfg)["curve"]
    images = sample_images(segments, model, prompts, cfg.evaluate, seed + cfg.evaluate.seed_offset)
    return judge.score(images, prompts, "curve")[0]["curve_reward"]


def flops_per_call(model) -> int:
    """FLOPs of one UNet evaluation for one sample (torch's counter; the text encoder runs
    once per prompt, not per step, and is left out)."""
    from graftbench.flops import count_flops

    device = next(model.network.parameters()).device
    x = torch.zeros((1, *model.sample_shape), device=device)
    cond = model.encode_condition([""])
    return count_flops(
        lambda: model.denoise(x, torch.zeros(1, dtype=torch.long, device=device), cond)
    )


def _guided(model) -> bool:
    return model.cfg.guidance_scale != 1.0


# ------------------------------------------------------------------------------------ verbs


def pretrain(cfg: T2IConfig, out: Path, log: Path | None = None, device: str = "cpu") -> None:
    """Pre-train the base on rendered scenes of every prompt of the grammar, held-out ones
    included: as SD's pre-training covers the concepts of the benchmarks it is fine-tuned
    for, the base has seen every combination, and the held-out prompts test whether what
    fine-tuning on the training prompts taught transfers to prompts it never saw.

    With `stable_diffusion` set there is nothing to pre-train: `out` becomes a reference to
    the folder (`stable_diffusion_base`)."""
    if cfg.stable_diffusion is not None:
        return stable_diffusion_base(cfg, out, log)
    from graftbench.models.text2image import Text2ImageAdapter
    from graftbench.t2i.pretrain import pretrain_loss
    from graftbench.train import fit

    torch.manual_seed(cfg.pretrain.seed)
    model = Text2ImageAdapter.from_config(cfg.model)  # initialised on the CPU, then moved
    # the loss renders and draws on the CPU; the adapter moves what it encodes to `device`
    model.network.to(device)
    split = split_prompts(cfg.scenes)
    loss = pretrain_loss(model, split.train + split.heldout, cfg.pretrain.batch_size)
    fit(model.network, loss, cfg.pretrain, out, to_dict(cfg), log)


def stable_diffusion_base(cfg: T2IConfig, out: Path, log: Path | None = None) -> None:
    """Check the SD folder and write `out` as a checkpoint that loads it with no weights of its
    own (what `StableDiffusionAdapter.save` writes for an untrained model, without copying
    the folder's gigabytes), so every later rule loads the base the same way."""
    from graftbench.models.stable_diffusion import check_folder

    folder = check_folder(cfg.stable_diffusion.path)
    records.save_checkpoint(
        out, {"model": {}, "lora": None}, {**to_dict(cfg), "model": to_dict(cfg.stable_diffusion)}
    )
    if log:
        records.append_jsonl(log, {"step": 0, "stable_diffusion": str(folder.resolve())})


def load_model(path: Path, device: str = "cpu"):
    """The model a t2i checkpoint holds: the small model, or SD (base reference or
    fine-tuned on top of its folder)."""
    from graftbench.models.text2image import Text2ImageAdapter

    if records.load_checkpoint(path)["config"].get("stable_diffusion"):
        from graftbench.models.stable_diffusion import StableDiffusionAdapter

        return StableDiffusionAdapter.load(path, device)
    return Text2ImageAdapter.load(path, device)


def _judge(cfg: T2IConfig, out: Path):
    from graftbench.t2i.judge import open_judge

    return open_judge(cfg.scorer, cfg.verifier, out / "scorer.log")


def _write_run(
    out: Path,
    metrics: dict,
    evaluation_: dict,
    images: np.ndarray,
    scores: np.ndarray,
    cfg: T2IConfig,
) -> None:
    with records.atomic_path(out / "images.npz") as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, images=images, scores=scores)
    n = len(eval_prompts(cfg)["heldout"]) * cfg.evaluate.samples_per_prompt
    records.save_image_grid(
        out / "grid.png", images[: min(n, 32)], ncol=cfg.evaluate.samples_per_prompt * 4
    )
    records.write_json(out / "config.json", to_dict(cfg))
    records.write_json(out / "eval.json", evaluation_)
    records.write_json(out / "metrics.json", metrics)  # last: its presence marks a finished run


def evaluate_base(
    cfg: T2IConfig, model_path: Path, seed: int, out: Path, device: str = "cpu"
) -> dict:
    """The pre-trained model, evaluated as every fine-tuned one is."""
    t0 = time.perf_counter()
    model = load_model(model_path, device)
    segments = [(plain_factory(model), None)]
    judge = _judge(cfg, out)
    try:
        ev, images, scores = evaluation(segments, model, cfg, judge, seed)
        ev["curve_reward"] = curve_point(segments, model, cfg, judge, seed)
    finally:
        judge.close()
    # the reference the fine-tuned runs' drift and training-reward change are measured from
    ev.update(drift=0.0, train_change=0.0, train_change_ci=0.0)
    metrics = {**base_record(seed, flops_per_call(model), t0, device), "evaluator": judge.name}
    _write_run(out, metrics, ev, images, scores, cfg)
    return {**metrics, **ev}


def _base_scores(path: Path, cfg: T2IConfig) -> np.ndarray:
    """The base run's per-image scores, which train_change pairs with; an InputError unless
    the file has as many as this config's evaluation makes (its images, which drift compares
    with, are read after fine-tuning: at SD scale they take a gigabyte)."""
    ev = cfg.evaluate
    n = sum(len(prompts) * k for prompts, k in _evaluated(cfg))
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


def finetune(
    cfg: T2IConfig,
    model_path: Path,
    run: str,
    seed: int,
    base_images: Path,
    out: Path,
    device: str = "cpu",
) -> dict:
    """Fine-tune the pre-trained model with one method on the training prompts until the
    reward budget is spent, recording a held-out curve point every `evaluate.curve_every`
    rounds; then evaluate it, with its drift and training-reward change from the base on the
    same evaluation noise."""
    from graftbench.methods.loop import image_reward

    t0 = time.perf_counter()
    base_scores = _base_scores(base_images, cfg)  # checked before any compute
    model = load_model(model_path, device)
    method = build_method(cfg, "t2i", run, model, seed)
    segments, n_i = eval_segments(method, model)
    judge = _judge(cfg, out)  # one scorer process for the loop and the evaluation
    try:
        rows = run_with_curve(
            method,
            finetune_prompts(cfg),
            image_reward(judge.reward()),
            lambda: curve_point(segments, model, cfg, judge, seed),
            cfg.evaluate.curve_every,
            out,
            model_input=lambda p: p.text,
        )
        if not is_writer():  # the other ranks' models equal rank 0's: it evaluates, writes
            return {}
        train_s = time.perf_counter() - t0
        ev, images, scores = evaluation(segments, model, cfg, judge, seed)
    finally:
        judge.close()
    base = np.load(base_images)["images"]
    if base.shape != images.shape:
        raise InputError(
            f"{base_images}: base images {base.shape} do not match this run's "
            f"{images.shape}; rerun the base evaluation"
        )
    ev["drift"] = float(np.sqrt(((images / 255 - base / 255) ** 2).mean()))
    train_prompts, k_train = _evaluated(cfg)[1]
    ev.update(paired_change(scores, base_scores, len(train_prompts) * k_train))
    ev["curve_reward"] = rows[-1]["curve_reward"]
    calls = 2 if _guided(model) else 1  # a guided evaluation is a conditional/unconditional pair
    metrics = run_record(rows, run, seed, n_i, flops_per_call(model), calls, t0, train_s, device)
    metrics["evaluator"] = judge.name
    model.save(out / "model.pt", to_dict(cfg))
    _write_run(out, metrics, ev, images, scores, cfg)
    finish(out)
    return {**metrics, **ev}
