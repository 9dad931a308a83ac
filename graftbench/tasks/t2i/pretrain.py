"""Pre-training the small text-to-image model on rendered (image, prompt) pairs.

The loss is SD's: a uniform timestep, DDPM noising with the scheduler's alpha_bar, MSE to the
epsilon or v target (Min-SNR weighted when the model config asks), the prompt replaced by the
empty one with probability `prompt_dropout` so that classifier-free guidance has an
unconditional model to subtract.

Data: every step renders a fresh batch (`scenes.sample_scene` + `render`) with a numpy
Generator seeded from fit's torch generator. Rendering costs ~0.5 ms per 32 px image (about
0.25 ms for one object, 0.8 ms for four; 2 CPU cores), a few per cent of a training step, so
a pre-rendered array would save little; on the fly, every step sees new positions and sizes
(no data set to memorise or store), and resuming replays the same batches because fit
checkpoints the generator.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from graftbench.losses import denoising_loss
from graftbench.tasks.t2i.render import render
from graftbench.tasks.t2i.scenes import Prompt, sample_scene


def render_batch(
    prompts: Sequence[Prompt], rng: np.random.Generator, image_size: int
) -> np.ndarray:
    """One random scene per prompt: (batch, image_size, image_size, 3) uint8."""
    return np.stack([render(sample_scene(p, rng), image_size) for p in prompts])


def drop_prompts(texts: Sequence[str], p: float, generator: torch.Generator) -> list[str]:
    """Each text replaced by "" with probability p (classifier-free guidance training)."""
    drop = torch.rand(len(texts), generator=generator) < p
    return ["" if d else text for text, d in zip(texts, drop.tolist(), strict=True)]


def pretrain_loss(
    model, prompts: Sequence[Prompt], batch_size: int
) -> Callable[[int, torch.Generator], torch.Tensor]:
    """loss_fn(step, generator) for `train.fit(model.network, ...)`.

    Each call draws batch_size prompts uniformly from `prompts` (so categories weigh by their
    number of prompts), renders one scene each at the model's image size, and returns the
    denoising loss with prompt dropout. Everything random comes from `generator`, so a
    resumed run replays the same batches.

    The text encoder trains jointly with the UNet (this sets model.trainable_parameters("full")
    and fit optimises all of model.network): it is random-initialised, so a frozen one would
    hand the UNet fixed random features of the token sequence, which could still separate
    prompts but never learn which words matter.
    """
    if not prompts:
        raise ValueError("pretrain_loss: no training prompts")
    model.trainable_parameters("full")
    size = model.cfg.sample_size

    def loss_fn(step: int, generator: torch.Generator) -> torch.Tensor:
        idx = torch.randint(len(prompts), (batch_size,), generator=generator).tolist()
        batch = [prompts[i] for i in idx]
        # numpy draws its own stream, seeded from the torch generator so it is checkpointed
        seed = int(torch.randint(2**62, (1,), generator=generator))
        images = render_batch(batch, np.random.default_rng(seed), size)
        x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
        with torch.no_grad():  # the VAE (if any) is frozen; the encoding needs no graph
            x0 = model.encode_images(x, generator if model.network.vae is not None else None)
        texts = drop_prompts([p.text for p in batch], model.cfg.prompt_dropout, generator)
        return denoising_loss(model, x0, model.encode_condition(texts), generator)

    return loss_fn
