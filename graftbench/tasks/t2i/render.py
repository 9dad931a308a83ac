"""Drawing the scenes of the text-to-image task: antialiased shapes (supersampled coverage) on
a plain background. The verifier renders shapes the same way to match what it sees."""

from __future__ import annotations

import numpy as np

from graftbench.tasks.t2i.scenes import BACKGROUND, COLOURS, Scene


def coverage(shape: str, x, y, size, image_size: int, window=None, ss: int = 4) -> np.ndarray:
    """Fraction of each pixel the shape covers, (h, w) float in [0, 1], estimated with ss x ss
    samples per pixel (antialiasing by supersampling). window = (rows, cols) slices limits
    the work to a crop; None is the whole image."""
    rows, cols = window or (slice(0, image_size), slice(0, image_size))
    ys = (np.arange(rows.start * ss, rows.stop * ss) + 0.5) / (image_size * ss) - y
    xs = (np.arange(cols.start * ss, cols.stop * ss) + 0.5) / (image_size * ss) - x
    dy, dx = np.meshgrid(ys, xs, indexing="ij")
    h = size / 2
    if shape == "circle":
        inside = dx**2 + dy**2 <= h**2
    elif shape == "square":
        inside = (np.abs(dx) <= h) & (np.abs(dy) <= h)
    elif shape == "triangle":  # upright: apex at the top centre, base along the bottom edge
        inside = (dy <= h) & (np.abs(dx) <= (dy + h) / 2)
    else:
        raise ValueError(f"unknown shape {shape!r}")
    return inside.reshape(len(ys) // ss, ss, len(xs) // ss, ss).mean(axis=(1, 3))


def render(scene: Scene, image_size: int = 32) -> np.ndarray:
    """Draw a scene: (image_size, image_size, 3) uint8 on the plain BACKGROUND."""
    bg = np.asarray(BACKGROUND, dtype=np.float64)
    img = np.broadcast_to(bg, (image_size, image_size, 3)).copy()
    for o in scene.objects:
        win = box_window(o.x, o.y, o.size, image_size)
        cov = coverage(o.shape, o.x, o.y, o.size, image_size, win)
        img[win] += cov[..., None] * (np.asarray(COLOURS[o.colour]) - bg)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def box_window(x, y, size, image_size: int, pad: int = 1) -> tuple[slice, slice]:
    """(rows, cols) pixel slices of a box of side `size` centred at (x, y), padded by `pad`
    pixels and clipped to the image."""

    def span(c):
        lo, hi = np.floor((c - size / 2) * image_size), np.ceil((c + size / 2) * image_size)
        return slice(max(int(lo) - pad, 0), min(int(hi) + pad, image_size))

    return span(y), span(x)
