"""The feature network of the layout FID, trained by the workflow on the training layouts.

Image FID's Inception features mean nothing for boxes, so the layout literature trains its own
network (LayoutGAN++, Kikuchi et al. 2021, sec. 5: a transformer trained to tell real layouts
from perturbed ones while reconstructing them; its pooled hidden state is the FID feature).
Ours follows that recipe: a transformer encoder over (box, class, position) tokens, pooled
into `dim` features by a learned query token; two heads on the pooled feature: real-or-
perturbed (binary cross-entropy) and the clean boxes (MSE, decoded per element from the
feature plus the element's class and position, so the feature must carry the whole layout).
Perturbations are Gaussian jitter of every box with probability 1/2 per layout, with a
random strength, so the feature separates sharp from sloppy layouts as well as different ones.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from graftbench.config import ConfigError, Count, NonNegative
from graftbench.tasks.layout.data import PAD
from graftbench.train import TrainConfig

FEATURES_KIND = "layout feature net"  # the checkpoint kind of features.pt (records)


@dataclass
class LayoutFeatureConfig:
    width: Count = 128  # transformer width
    layers: Count = 3  # encoder layers
    heads: Count = 4  # attention heads (must divide width)
    dim: Count = 64  # feature dimension (the FID's Gaussian lives in R^dim)
    max_jitter: NonNegative = 0.05  # largest std of the box perturbation (page units)
    train: TrainConfig = field(  # its training
        default_factory=lambda: TrainConfig(
            steps=1500,
            batch_size=128,
            lr=1e-3,
            warmup=100,
            ema_decay=0.0,
            checkpoint_every=500,
        )
    )

    def __post_init__(self):
        if self.width % self.heads:
            raise ConfigError(f"layout.features.heads: {self.heads} must divide width {self.width}")


class LayoutFeatureNet(nn.Module):
    """features(boxes (batch, L, 4) page units, classes (batch, L), mask (batch, L)) ->
    (batch, dim); forward also returns the heads' outputs."""

    def __init__(self, cfg: LayoutFeatureConfig, max_elements: int):
        super().__init__()
        d = cfg.width
        self.box = nn.Linear(4, d)
        self.cls = nn.Embedding(PAD + 1, d)
        self.pos = nn.Parameter(torch.randn(max_elements + 1, d) * 0.02)
        self.query = nn.Parameter(torch.randn(1, 1, d) * 0.02)
        layer = nn.TransformerEncoderLayer(
            d, cfg.heads, 4 * d, dropout=0.0, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False)
        self.to_feature = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, cfg.dim))
        self.real_head = nn.Linear(cfg.dim, 1)
        self.dec_cls = nn.Embedding(PAD + 1, d)
        self.dec = nn.Sequential(nn.Linear(cfg.dim + d, d), nn.GELU(), nn.Linear(d, 4))

    def features(self, boxes, classes, mask) -> torch.Tensor:
        n, length = classes.shape
        h = self.box(boxes) + self.cls(classes) + self.pos[1 : length + 1]
        h = torch.cat([self.query.expand(n, -1, -1) + self.pos[:1], h], 1)
        keep = torch.cat([torch.ones(n, 1, dtype=torch.bool, device=mask.device), mask], 1)
        return self.to_feature(self.encoder(h, src_key_padding_mask=~keep)[:, 0])

    def forward(self, boxes, classes, mask):
        f = self.features(boxes, classes, mask)
        length = classes.shape[1]
        dec_in = torch.cat(
            [f[:, None].expand(-1, length, -1), self.dec_cls(classes) + self.pos[1 : length + 1]],
            -1,
        )
        return f, self.real_head(f).squeeze(-1), self.dec(dec_in)


def feature_loss(
    net: LayoutFeatureNet,
    boxes: np.ndarray,
    classes: np.ndarray,
    mask: np.ndarray,
    cfg: LayoutFeatureConfig,
) -> Callable[[int, torch.Generator], torch.Tensor]:
    """loss_fn(step, generator) for `train.fit`: padded training layouts boxes (n, L, 4),
    classes (n, L), mask (n, L); a random batch per step, half of it jittered. The batch and
    jitter come from fit's CPU generator and move to the network's device."""
    b, c, m = (torch.from_numpy(a) for a in (boxes.astype(np.float32), classes, mask))

    def loss_fn(step: int, g: torch.Generator) -> torch.Tensor:
        dev = net.pos.device
        idx = torch.randint(len(b), (cfg.train.batch_size,), generator=g)
        x, cls, msk = b[idx].to(dev), c[idx].to(dev), m[idx].to(dev)
        fake = torch.rand(len(idx), generator=g) < 0.5
        std = torch.rand(len(idx), 1, 1, generator=g) * cfg.max_jitter * fake[:, None, None]
        jitter = std * torch.randn(x.shape, generator=g)
        fake, jitter = fake.to(dev), jitter.to(dev)
        noisy = (x + jitter).clamp(0, 1) * msk[..., None]
        _, logit, rec = net(noisy, cls, msk)
        bce = nn.functional.binary_cross_entropy_with_logits(logit, (~fake).float())
        mse = ((rec - x) ** 2).sum(-1)[msk].mean()
        return bce + 10 * mse  # boxes in page units: MSE ~1e-2 early, so weigh it up

    return loss_fn


@torch.no_grad()
def extract(
    net: LayoutFeatureNet,
    boxes: np.ndarray,
    classes: np.ndarray,
    mask: np.ndarray,
    batch_size: int = 1024,
) -> np.ndarray:
    """Features (n, dim) float64 of padded layouts, computed on the network's device."""
    net.eval()
    dev = net.pos.device
    out = []
    for s in range(0, len(boxes), batch_size):
        sl = slice(s, s + batch_size)
        inputs = (boxes[sl].astype(np.float32), classes[sl], mask[sl])
        out.append(net.features(*(torch.from_numpy(a).to(dev) for a in inputs)).cpu())
    return torch.cat(out).double().numpy()
