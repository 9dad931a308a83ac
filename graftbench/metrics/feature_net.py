"""A small CNN classifier trained on the task's own training split, used as a fast FID
feature extractor on CPU (Inception-v3 runs at ~3.6 images/s on 2 cores).

Its FID is *not* comparable with published Inception FIDs; every table names the back-end.
It is trained on the training split only; FID references use the held-out split.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from graftbench.config import Count, Positive

FEATURES_KIND = "fid feature net"  # the checkpoint kind (records) of a trained FeatureNet


@dataclass
class FeatureNetConfig:
    steps: Count = 1500  # optimiser steps of classifier training
    batch_size: Count = 128  # images per step
    lr: Positive = 1e-3  # Adam learning rate
    dim: Count = 128  # feature dimension (penultimate layer) used for FID
    seed: int = 0  # initialisation and batch-order seed


class FeatureNet(nn.Module):
    """conv-conv-fc classifier; `features` returns the penultimate activations (batch, dim)."""

    def __init__(self, in_channels: int, image_size: int, num_classes: int, dim: int):
        super().__init__()
        self.image_size = image_size
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(64 * (image_size // 4) ** 2, dim),
            nn.ReLU(),
        )
        self.head = nn.Linear(dim, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """x: (batch, C, H, W) in [0, 1] -> (batch, dim)."""
        return self.body(x * 2 - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def train_feature_net(
    images: np.ndarray, labels: np.ndarray, cfg: FeatureNetConfig, device: str = "cpu"
):
    """images (N, H, W, C) uint8, labels (N,) -> (trained FeatureNet on `device`, training
    accuracy). Initialisation and batch order come from the CPU, so they are the same on
    every device."""
    torch.manual_seed(cfg.seed)
    g = torch.Generator().manual_seed(cfg.seed)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    y = torch.from_numpy(labels)
    net = FeatureNet(x.shape[1], x.shape[2], int(y.max()) + 1, cfg.dim).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    for _ in tqdm(range(cfg.steps), desc="feature net", mininterval=5, disable=None):
        idx = torch.randint(len(x), (cfg.batch_size,), generator=g)
        loss = nn.functional.cross_entropy(net(x[idx].to(device)), y[idx].to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return net.eval(), accuracy(net, x, y)


@torch.no_grad()
def accuracy(net: FeatureNet, x: torch.Tensor, y: torch.Tensor) -> float:
    device = next(net.parameters()).device
    pred = torch.cat([net(b.to(device)).argmax(1).cpu() for b in x.split(500)])
    return (pred == y).float().mean().item()
