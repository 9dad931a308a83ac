"""Layout files: `write_json`/`read_json` use an open format
    {"classes": [...CLASSES], "layouts": [{"classes": ["text", ...], "boxes": [[xc, yc, w, h], ...]}]}
and `load_coco` reads PubLayNet's COCO-style annotations (or RICO converted to them). A bad
file is an InputError naming the file and the entry."""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from graftbench.config import InputError
from graftbench.tasks.layout.data import CLASSES, Layout, condition


def write_json(
    layouts: Sequence[Layout], path: str | Path, extra: Sequence[Mapping] | None = None
) -> None:
    """Write layouts in the open format, atomically; `extra[i]` adds keys (e.g. "reward")."""
    extra = [{}] * len(layouts) if extra is None else extra
    items = [
        {**e, "classes": list(condition(lay)), "boxes": lay.boxes.tolist()}
        for lay, e in zip(layouts, extra, strict=True)
    ]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # a temporary sibling renamed into place: a killed run leaves the old file or the new one
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            # allow_nan=False: NaN is not JSON, and read_json would reject the file later
            json.dump({"classes": list(CLASSES), "layouts": items}, f, allow_nan=False)
            f.write("\n")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def read_json(path: str | Path) -> list[Layout]:
    """Read the open format; InputError names the file and the layout index."""
    data = _load(path)
    if not isinstance(data, dict) or not isinstance(data.get("layouts"), list):
        raise InputError(f"{path}: expected a JSON object with a 'layouts' list")
    ids = {name: i for i, name in enumerate(CLASSES)}
    out = []
    for i, item in enumerate(data["layouts"]):
        where = f"{path}: layouts[{i}]"
        if not isinstance(item, dict) or not all(
            isinstance(item.get(k), list) for k in ("classes", "boxes")
        ):
            raise InputError(f"{where}: expected an object with 'classes' and 'boxes' lists")
        names, boxes = item["classes"], item["boxes"]
        for name in names:
            if not isinstance(name, str) or name not in ids:
                raise InputError(f"{where}: class {name!r} is not one of {', '.join(CLASSES)}")
        for j, box in enumerate(boxes):
            if not _numbers(box, 4):
                raise InputError(f"{where}: boxes[{j}] is not 4 finite numbers: {box!r}")
        if len(names) != len(boxes) or not names:
            raise InputError(
                f"{where}: {len(names)} classes and {len(boxes)} boxes; "
                "need the same number, at least 1"
            )
        out.append(Layout(np.array([ids[n] for n in names]), np.array(boxes, dtype=np.float64)))
    return out


def load_coco(path: str | Path, max_elements: int) -> list[Layout]:
    """Layouts from COCO-style annotations (PubLayNet's format), in image-id order.

    Pixel boxes [x, y, w, h] (top-left corner) become normalised centre boxes. Elements are
    sorted into reading order: left column then right, each top to bottom. An element is in
    the right column when its centre lies right of the midline by more than a quarter of its
    width, so blocks of a one-column page that straddle the midline stay in one column.
    Images with no elements or more than `max_elements` are skipped.
    """
    data = _load(path)
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object with images, annotations, categories")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise InputError(f"{path}: '{key}' is missing or not a list")
    cats = {}
    for i, cat in enumerate(data["categories"]):
        name = _get(path, f"categories[{i}]", cat, "name", str)
        if name.lower() not in CLASSES:
            raise InputError(
                f"{path}: categories[{i}]: name {name!r} is not a layout class; "
                f"expected one of {', '.join(CLASSES)} (any case)"
            )
        cats[_get(path, f"categories[{i}]", cat, "id", int)] = CLASSES.index(name.lower())
    sizes = {}
    for i, img in enumerate(data["images"]):
        where = f"images[{i}]"
        w, h = (_get(path, where, img, k, (int, float)) for k in ("width", "height"))
        if not (w > 0 and h > 0):
            raise InputError(f"{path}: {where}: width and height must be positive")
        sizes[_get(path, where, img, "id", int)] = (w, h)
    pages: dict[int, list] = {k: [] for k in sizes}
    for i, ann in enumerate(data["annotations"]):
        where = f"annotations[{i}]"
        image, cat = (
            _get(path, where, ann, "image_id", int),
            _get(path, where, ann, "category_id", int),
        )
        bbox = _get(path, where, ann, "bbox", list)
        if image not in sizes or cat not in cats:
            raise InputError(f"{path}: {where}: unknown image_id {image} or category_id {cat}")
        if not _numbers(bbox, 4) or bbox[2] < 0 or bbox[3] < 0:
            raise InputError(f"{path}: {where}: 'bbox' is not [x, y, w, h] with w, h >= 0")
        (W, H), (x, y, w, h) = sizes[image], bbox
        xc, yc, w, h = (x + w / 2) / W, (y + h / 2) / H, w / W, h / H
        right = xc > 0.5 + w / 4
        pages[image].append(((right, yc - h / 2, i), cats[cat], (xc, yc, w, h)))
    out = []
    for image in sorted(pages):
        elements = sorted(pages[image], key=lambda e: e[0])
        if 1 <= len(elements) <= max_elements:
            out.append(
                Layout(np.array([e[1] for e in elements]), np.array([e[2] for e in elements]))
            )
    return out


def _load(path: str | Path):
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except json.JSONDecodeError as err:
        raise InputError(f"{path}:{err.lineno}: not valid JSON ({err.msg})") from None
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: cannot read ({err})") from None


def _get(path, where: str, entry, key: str, kind):
    """entry[key] checked to be of `kind` (bools, which JSON keeps apart, are not numbers)."""
    value = entry.get(key) if isinstance(entry, dict) else None
    if not isinstance(value, kind) or isinstance(value, bool):
        raise InputError(f"{path}: {where}: '{key}' is missing or of the wrong type: {value!r}")
    return value


def _numbers(values, n: int) -> bool:
    """Whether `values` is a list of `n` finite numbers."""
    return (
        isinstance(values, list)
        and len(values) == n
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
        and all(math.isfinite(v) for v in values)
    )
