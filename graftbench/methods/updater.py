"""The optimiser of reward fine-tuning: what is trained and how (`OptimConfig`), and AdamW
kept across the loop's rounds (`Updater`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from graftbench.config import Count, NonNegative, Positive
from graftbench.distributed import average_gradients
from graftbench.models.base import FinetuneModel, LoraSettings


@dataclass
class OptimConfig:
    trainable: Literal["full", "unet", "lora"] = "unet"  # what is fine-tuned (the model's
    # `trainable_parameters`: unet and lora are the text-to-image models'; others allow
    # only "full")
    lora: LoraSettings | None = None  # LoRA rank/alpha/targets for trainable = "lora"
    lr: Positive = 1e-4  # AdamW learning rate, constant (the optimiser persists across rounds)
    weight_decay: NonNegative = 0.0  # AdamW weight decay
    grad_clip: Positive = 1.0  # max global gradient norm per optimiser step
    batch_size: Count = 32  # training examples per optimiser step


class Updater:
    """AdamW over the trainable parameters, kept across rounds (not `train.fit`, which starts
    a fresh optimiser, warm-up and EMA copy per call: online rounds, DDPO's especially, keep
    Adam's moments from one batch of trajectories to the next, as ddpo-pytorch does)."""

    def __init__(self, model: FinetuneModel, cfg: OptimConfig):
        self.params = model.trainable_parameters(cfg.trainable, cfg.lora)
        if not self.params:
            raise ValueError("no trainable parameters")
        self.opt = torch.optim.AdamW(self.params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.grad_clip = cfg.grad_clip

    def step(self) -> float:
        """Average the accumulated gradients over data-parallel ranks (none on one process),
        clip, step and clear them; returns the gradient norm."""
        average_gradients(self.params)
        norm = torch.nn.utils.clip_grad_norm_(self.params, self.grad_clip)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        return float(norm)

    def state_dict(self) -> dict:
        """What fine-tuning has changed: the trained parameters (in `params` order, which
        the optimiser's state refers to) and the optimiser's moments. Frozen weights are
        rebuilt from the pre-trained checkpoint, so they are not stored again."""
        return {
            "params": [p.detach().cpu().clone() for p in self.params],
            "optimizer": self.opt.state_dict(),
        }

    @torch.no_grad()
    def load_state_dict(self, state: dict) -> None:
        if len(state["params"]) != len(self.params):
            raise ValueError(
                f"checkpoint has {len(state['params'])} trained tensors, the "
                f"model {len(self.params)}"
            )
        for p, saved in zip(self.params, state["params"], strict=True):
            p.copy_(saved)
        self.opt.load_state_dict(state["optimizer"])
