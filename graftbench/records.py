"""Run records: atomic writes of configs, metrics, logs, sample grids and checkpoints.

Checkpoints (`model.pt`, `features.pt`, `*.partial`, ...) keep their names, but their content
is safetensors, never a pickle: `graftbench.checkpoints` describes the format and its checks.

Every file a run leaves is written to a temporary sibling and renamed into place, so a run
killed at any moment leaves either the old file or the new one, never half of one
(os.replace is atomic on POSIX within a filesystem).
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

_UMASK = os.umask(0)
os.umask(_UMASK)

VERSIONED_PACKAGES = (
    "torch",
    "diffusers",
    "transformers",
    "clean-fid",
    "numpy",
    "rdkit",
    "fcd-torch",
    "selfies",
    "graftbench",
)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to `path`; rename it onto `path` if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; results should read like any file
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_json(path: str | Path, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())


def append_jsonl(path: str | Path, record: dict) -> None:
    """Append one line; a line is written with a single write call, so it is whole or absent."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(record, sort_keys=True, default=_json_default) + "\n"
    with open(path, "a") as f:
        f.write(line)


def read_jsonl(path: str | Path) -> list[dict]:
    """Every line of a JSON-lines file, as dicts."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def write_jsonl_rows(path: str | Path, rows: list[dict]) -> None:
    """Write a whole JSON-lines file atomically (e.g. the conditions of a sample folder)."""
    text = "".join(json.dumps(r, sort_keys=True, default=_json_default) + "\n" for r in rows)
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def save_checkpoint(path: str | Path, state: dict, config: dict, *, kind: str) -> None:
    """Save `state` (model/optimizer/RNG state dicts, nested dicts, lists, tuples, scalars,
    tensors on any device) with the config that produced it, as a checkpoint of `kind`
    (what the file is, e.g. "molecule model": loading names the kind it expects)."""
    from graftbench import checkpoints

    with atomic_path(path) as tmp:
        checkpoints.save(tmp, state, config, kind, versions())


def load_checkpoint(path: str | Path, kind: str | tuple[str, ...] | None = None):
    """{"config", "versions", **state} of a checkpoint, tensors on the CPU; `.kind` and
    `.content_sha256` tell what it is. Raises InputError naming `path` if the file is
    missing, truncated, corrupt, not a graftbench checkpoint, or not of `kind` (one kind or
    a tuple of accepted kinds; None accepts any, for tools that only inspect)."""
    from graftbench import checkpoints

    return checkpoints.load(Path(path), kind)


def checkpoint_header(path: str | Path, kind: str | tuple[str, ...] | None = None) -> dict:
    """A checkpoint's header alone (kind, config, versions, content_sha256, and the state's
    skeleton), checked as `load_checkpoint` does except for the tensors' bytes: cheap, for
    choosing how to load a file that is then loaded in full."""
    from graftbench import checkpoints

    record = checkpoints.read_record(Path(path), kind)
    return {**record, "config": checkpoints.decode_config(record)}


def save_image_grid(
    path: str | Path, images: np.ndarray, ncol: int = 8, min_side: int = 48
) -> None:
    """Save (batch, H, W, C) uint8 images as one PNG grid with a 2-pixel border; images
    smaller than `min_side` are enlarged by pixel repetition so small digits stay legible."""
    from PIL import Image

    scale = max(1, min_side // images.shape[1])
    images = images.repeat(scale, axis=1).repeat(scale, axis=2)
    n, h, w, c = images.shape
    nrow = -(-n // ncol)
    grid = np.full((nrow * (h + 2) + 2, ncol * (w + 2) + 2, c), 255, dtype=np.uint8)
    for i, img in enumerate(images):
        r, q = divmod(i, ncol)
        grid[2 + r * (h + 2) : 2 + r * (h + 2) + h, 2 + q * (w + 2) : 2 + q * (w + 2) + w] = img
    with atomic_path(path) as tmp:
        Image.fromarray(grid.squeeze(-1) if c == 1 else grid).save(tmp, format="PNG")


def versions() -> dict[str, str]:
    """Versions of the packages that can change a number, stored in every record."""
    out = {"python": platform.python_version()}
    for name in VERSIONED_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray | torch.Tensor):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot write {type(obj).__name__} to JSON")
