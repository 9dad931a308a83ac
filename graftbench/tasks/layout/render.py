"""Draw layouts as small images: a white page with one translucent, outlined box per element."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from graftbench.tasks.layout.data import CLASSES, Layout

# Okabe-Ito colours (index = class id): distinct under the common colour-vision deficiencies.
PALETTE = ((0, 114, 178), (213, 94, 0), (0, 158, 115), (230, 159, 0), (204, 121, 167))
_FILL_ALPHA = 110  # of 255: overlapping boxes show through each other, and so look darker
_PAD_GREY = (128, 128, 128)  # between tiles, so white pages stand apart


def legend() -> dict[str, tuple[int, int, int]]:
    """Class name -> RGB colour, for figure legends."""
    return dict(zip(CLASSES, PALETTE, strict=True))


def render(layout: Layout, size: int = 96) -> np.ndarray:
    """The layout drawn on a white (size, size, 3) uint8 page, elements in order."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (size, size), (255, 255, 255))
    draw = ImageDraw.Draw(img, "RGBA")  # RGBA mode blends each fill over what lies below
    for c, (xc, yc, w, h) in zip(layout.classes, layout.boxes, strict=True):
        # sorted: a model may emit negative sizes, and PIL rejects x1 < x0
        x0, x1 = sorted((round((xc - w / 2) * size), round((xc + w / 2) * size) - 1))
        y0, y1 = sorted((round((yc - h / 2) * size), round((yc + h / 2) * size) - 1))
        colour = PALETTE[c]
        dark = tuple(v * 6 // 10 for v in colour)
        draw.rectangle((x0, y0, x1, y1), fill=(*colour, _FILL_ALPHA), outline=(*dark, 255))
    return np.asarray(img)


def grid(layouts: Sequence[Layout], ncol: int, size: int = 96, pad: int = 2) -> np.ndarray:
    """Rendered layouts in rows of `ncol`, `pad` grey pixels apart: (H, W, 3) uint8."""
    nrow = max(1, math.ceil(len(layouts) / ncol))
    step = size + pad
    out = np.empty((nrow * step + pad, ncol * step + pad, 3), np.uint8)
    out[:] = _PAD_GREY
    for k, layout in enumerate(layouts):
        r, c = divmod(k, ncol)
        out[pad + r * step : pad + r * step + size, pad + c * step : pad + c * step + size] = (
            render(layout, size)
        )
    return out
