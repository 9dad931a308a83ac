"""A run's method from its name, and the samplers a fine-tuned run is evaluated with."""

from __future__ import annotations

import dataclasses

import torch

from graftbench.config import ConfigError
from graftbench.finetuning.task import FinetuneConfig, method_config
from graftbench.methods.rollout import Segment, denoiser
from graftbench.models.base import FinetuneModel

SELF_FIT = "self_fit"  # the reference run: GRAFT's update on all M samples, no selection


def build_method(
    cfg: FinetuneConfig, task: str, run: str, model: FinetuneModel, seed: int, dedup_key=None
):
    """The fine-tuning method of a run name (graft, ddpo, pgraft{N_I}, and self_fit or
    graft_<variant> for a task config with such a section, e.g. graft_threshold) on
    `model`, its loop seeded with the run's seed. dedup_key: identity of a decoded sample
    for GRAFT's de-duplication (default: `graft.sample_key`, exact copies)."""
    from graftbench.methods.ddpo import DDPO
    from graftbench.methods.graft import Graft
    from graftbench.methods.pgraft import PGraft

    variants = [
        f.name for f in dataclasses.fields(cfg) if f.name.startswith("graft_") or f.name == SELF_FIT
    ]
    key = {} if dedup_key is None else {"dedup_key": dedup_key}
    if run == "graft" or run in variants:
        cls, mcfg = Graft, method_config(cfg, run)
    elif run == "ddpo":
        cls, mcfg, key = DDPO, cfg.ddpo, {}
    elif run.startswith("pgraft") and run[6:].isdigit():
        if int(run[6:]) not in cfg.pgraft.intermediate_steps:
            raise ConfigError(
                f"{run}: N_I {run[6:]} is not in {task}.pgraft.intermediate_steps "
                f"{cfg.pgraft.intermediate_steps}"
            )
        cls, mcfg = PGraft, cfg.pgraft.at(int(run[6:]))
    else:
        raise ConfigError(
            f"--run: {run!r}; choose {', '.join(['graft', *variants, 'ddpo'])} or pgraft<N_I>"
        )
    mcfg = dataclasses.replace(mcfg, loop=dataclasses.replace(mcfg.loop, seed=seed))
    torch.manual_seed(seed)  # LoRA's initial A matrices
    return cls(model, mcfg, **key)


def plain_factory(model: FinetuneModel, scale: float | None = None):
    """inputs -> the sampler callable of `model` (`methods.rollout.denoiser`)."""
    return lambda inputs: denoiser(model, inputs, scale)


def eval_segments(method, model: FinetuneModel) -> tuple[list[Segment], int | None]:
    """The evaluation sampler's segments for a fine-tuned model and P-GRAFT's N_I (None for
    other methods): P-GRAFT samples with the fine-tuned model down to N_I, the base after."""
    from graftbench.methods.pgraft import PGraft

    if isinstance(method, PGraft):
        n_i = method.cfg.intermediate_step
        return [(plain_factory(model), n_i), (method.base_factory(), None)], n_i
    return [(plain_factory(model), None)], None


BEST_OF_STRIDE = 100_003  # draw j of best-of-M starts from the noise of seed + j * this


@torch.no_grad()
def sample_final(
    model: FinetuneModel,
    segments: list[Segment],
    inputs: list,
    *,
    num_steps: int,
    batch: int,
    seed: int,
    eta: float = 0.0,
    scheduler: str = "ddim",
    best_of: int = 1,
    reward=None,
    conditions: list | None = None,
) -> torch.Tensor:
    """Final states (len(inputs), *sample_shape) of the evaluation sampler: `segments` as in
    `methods.rollout.sample_segments` (one for a plain model, two for P-GRAFT's stitching),
    noise from a generator seeded with `seed` on the model's device, so every method gets
    the same noise at a seed.

    best_of M > 1: the `best_of_m` reference, which uses the evaluator at inference time.
    M draws per input (the first from `seed`'s noise, the others from seed + j *
    BEST_OF_STRIDE), each scored by `reward(model.decode(states), conditions)` (the raw
    conditions of `inputs`, in order); the state with the highest score is kept per input
    (the first on ties)."""
    from graftbench.methods.loop import LoopConfig
    from graftbench.methods.rollout import sample_segments

    device = next(model.network.parameters()).device
    loop = LoopConfig(num_steps=num_steps, eta=eta, sample_batch=batch)
    sched = model.scheduler(scheduler)

    def draw(noise_seed: int) -> torch.Tensor:
        g = torch.Generator(device=device).manual_seed(noise_seed)
        return sample_segments(model, segments, sched, inputs, loop, g, keep={num_steps}).final

    if best_of == 1:
        return draw(seed)
    if reward is None or conditions is None or len(conditions) != len(inputs):
        raise ValueError("sample_final: best_of > 1 needs the reward and one condition per input")
    best, best_score = None, None
    for j in range(best_of):
        final = draw(seed + j * BEST_OF_STRIDE)
        score = torch.cat(
            [
                torch.as_tensor(reward(model.decode(z), conditions[i : i + batch]))
                .double()
                .reshape(-1)
                .cpu()
                for i, z in zip(range(0, len(final), batch), final.split(batch), strict=True)
            ]
        ).nan_to_num(nan=float("-inf"))
        if best is None:
            best, best_score = final.clone(), score
            continue
        better = score > best_score
        best[better.to(best.device)] = final[better.to(final.device)]
        best_score = torch.where(better, score, best_score)
    return best
