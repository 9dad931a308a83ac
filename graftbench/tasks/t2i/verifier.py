"""Programmatic VQA-style verifier: detect coloured shapes in an image and check a prompt.

It plays both roles the paper's T2I evaluation uses: `score` (fraction of the prompt's
statements that hold) stands in for VQAScore, `correct` (all hold) for GenEval.

Detection, for an (H, W, 3) uint8 image:
1. Colour. Each pixel is modelled as a blend bg + alpha * (c - bg) of the background and one
   palette colour c (antialiasing and blur make exactly such blends). For each c we take the
   least-squares alpha and the residual; the pixel belongs to the colour with the smallest
   residual when that residual is small (an off-palette colour matches none) and alpha >= 0.5.
2. Objects. Connected components (4-connectivity, scipy.ndimage.label) of each colour's
   mask; components smaller than a small object's triangle by a wide margin, or larger than
   any object could be, are dropped as noise or background.
3. Shape. From the component's soft alpha map: its mass gives the side each shape would need
   (circle pi s^2/4, square s^2, triangle s^2/2), its centroid the position; each shape is
   rendered there (`render.coverage`) and the best soft IoU wins. Below `min_iou` the blob
   is no recognisable shape and counts as nothing.
4. Statements. Exists/Count match colour and shape; a relation holds for some pair of
   detections when the centroid offset along its axis exceeds `min_offset` and the offset
   across it (the relation is unambiguous, not a diagonal).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import ndimage

from graftbench.tasks.t2i.render import box_window, coverage
from graftbench.tasks.t2i.scenes import (
    BACKGROUND,
    COLOURS,
    SHAPES,
    Count,
    Exists,
    Prompt,
    Relation,
    Statement,
    along_across,
)

BLURS = (0.0, 0.7, 1.4)  # template blurs (pixels): model outputs are softer than renders


@dataclass
class VerifierConfig:
    max_residual: float = 0.3  # colour-fit residual (RGB in [0, 1]) beyond which: no colour
    # objects of the grammar have areas 0.02 (small triangle) to 0.078 (large square); blobs far
    # outside that range are noise or background, not objects
    min_area: float = 0.01  # smallest object area, image-relative
    max_area: float = 0.15  # largest object area, image-relative
    min_iou: float = 0.65  # soft IoU with the best shape template below which a blob is no shape
    max_objects: int = 8  # more detections is clutter, not a scene: every statement fails
    min_offset: float = 0.05  # centroid offset a spatial relation needs, image-relative
    reward: Literal["score", "correct"] = "score"  # what the reward callable returns


@dataclass(frozen=True)
class Detection:
    colour: str
    shape: str
    x: float  # centroid, image-relative, x right
    y: float  # y down
    area: float  # soft area, image-relative
    iou: float  # soft IoU with the shape template


@dataclass(frozen=True)
class Verdict:
    score: float  # fraction of statements that hold (the VQAScore role)
    correct: bool  # every statement holds (the GenEval role)
    results: tuple[bool, ...]  # one per prompt statement, in order
    category: str
    detections: tuple[Detection, ...]


def colour_maps(image: np.ndarray, colours: Sequence[str], max_residual: float):
    """Per-pixel alpha and label. Returns alpha (K, H, W) in [0, 1], the least-squares blend
    weight of each colour, and label (H, W) int: index into colours, -1 for background."""
    bg = np.asarray(BACKGROUND, dtype=np.float64) / 255
    d = np.asarray([COLOURS[c] for c in colours], dtype=np.float64) / 255 - bg  # (K, 3)
    p = image.astype(np.float64) / 255 - bg  # (H, W, 3)
    alpha = np.clip(np.einsum("hwc,kc->khw", p, d) / (d**2).sum(1)[:, None, None], 0, 1)
    resid = np.linalg.norm(p[None] - alpha[..., None] * d[:, None, None], axis=-1)
    best = resid.argmin(0)
    a = np.take_along_axis(alpha, best[None], 0)[0]
    r = np.take_along_axis(resid, best[None], 0)[0]
    label = np.where((a >= 0.5) & (r <= max_residual), best, -1)
    return alpha, label


def detect(
    image: np.ndarray, cfg: VerifierConfig | None = None, colours: Sequence[str] | None = None
) -> list[Detection]:
    """Coloured shapes in one (H, W, 3) uint8 image; colours defaults to the whole palette, so
    a wrongly coloured object is recognised as such rather than as the nearest asked colour."""
    cfg = cfg or VerifierConfig()
    colours = list(colours or COLOURS)
    image = np.asarray(image)
    # wrong arrays are caller bugs and raise; any uint8 content, however bad, only scores low.
    # A float image in [0, 1] would otherwise read as black and silently score 0.
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"image: expected (H, W, 3) uint8, got {image.dtype} {image.shape}")
    h, w = image.shape[:2]
    size = min(h, w)
    if (h, w) != (size, size):
        raise ValueError(f"image: expected a square image, got {h} x {w}")
    if size == 0:
        return []
    alpha, label = colour_maps(image, colours, cfg.max_residual)
    out = []
    for k, colour in enumerate(colours):
        comps, _ = ndimage.label(label == k)
        for i, sl in enumerate(ndimage.find_objects(comps), start=1):
            comp = comps[sl] == i
            if comp.sum() < cfg.min_area * size**2 / 2:  # cheap early exit for speckle
                continue
            # the soft map takes back the rim (alpha < 0.5, left out of the mask) from a
            # two-pixel dilation (blur spreads it that far), minus other colours' pixels
            grown = np.zeros((h, w), bool)
            grown[sl] = comp
            grown = ndimage.binary_dilation(grown, iterations=2) & np.isin(label, (k, -1))
            soft = np.where(grown, alpha[k], 0.0)
            if (det := _shape(soft, colour, size, cfg)) is not None:
                out.append(det)
    return out


def _shape(soft: np.ndarray, colour: str, size: int, cfg: VerifierConfig) -> Detection | None:
    """Fit each shape to one component's soft map (size, size); None if none fits."""
    mass = soft.sum()
    ys, xs = (np.arange(size) + 0.5) / size, (np.arange(size) + 0.5) / size
    cy, cx = (soft.sum(1) @ ys) / mass, (soft.sum(0) @ xs) / mass
    area = mass / size**2
    if not cfg.min_area <= area <= cfg.max_area:
        return None
    best, best_iou = None, -1.0
    for shape in SHAPES:
        side = np.sqrt(area * {"circle": 4 / np.pi, "square": 1.0, "triangle": 2.0}[shape])
        # a triangle's centroid sits side/6 below its box centre
        y = cy - side / 6 if shape == "triangle" else cy
        win = box_window(cx, y, side, size, pad=3)
        sharp = coverage(shape, cx, y, side, size, win)
        inside = soft[win]
        outside = mass - inside.sum()  # blob mass the window misses counts against the fit
        for sigma in BLURS:
            tmpl = ndimage.gaussian_filter(sharp, sigma, mode="constant") if sigma else sharp
            iou = np.minimum(inside, tmpl).sum() / (np.maximum(inside, tmpl).sum() + outside)
            if iou > best_iou:
                best, best_iou = shape, float(iou)
    if best_iou < cfg.min_iou:
        return None
    return Detection(colour, best, float(cx), float(cy), float(area), best_iou)


def holds(statement: Statement, detections: Sequence[Detection], min_offset: float) -> bool:
    """Whether one statement holds for an image's detections."""
    if isinstance(statement, Exists | Count):
        e = statement.entity
        n = sum(d.colour == e.colour and d.shape == e.shape for d in detections)
        return n >= 1 if isinstance(statement, Exists) else n == statement.n
    if isinstance(statement, Relation):
        s, o = statement.subject, statement.other
        subj = [d for d in detections if (d.colour, d.shape) == (s.colour, s.shape)]
        other = [d for d in detections if (d.colour, d.shape) == (o.colour, o.shape)]
        return any(
            _relation(a, statement.relation, b, min_offset)
            for a in subj
            for b in other
            if a is not b
        )
    raise TypeError(f"unknown statement {statement!r}")


def _relation(a: Detection, relation: str, b: Detection, min_offset: float) -> bool:
    along, across = along_across(relation, b.x - a.x, b.y - a.y)
    return along > min_offset and along > abs(across)


def verify(image: np.ndarray, prompt: Prompt, cfg: VerifierConfig | None = None) -> Verdict:
    """Check every statement of `prompt` on one (H, W, 3) uint8 image."""
    cfg = cfg or VerifierConfig()
    dets = detect(image, cfg)
    # Exists statements reward any clutter, so a model could spray objects to satisfy them
    if len(dets) > cfg.max_objects:
        dets = []
    results = tuple(holds(s, dets, cfg.min_offset) for s in prompt.statements)
    score = sum(results) / len(results) if results else 0.0
    return Verdict(score, all(results) and bool(results), results, prompt.category, tuple(dets))


def verifier_reward(
    cfg: VerifierConfig | None = None,
) -> Callable[[np.ndarray, Sequence[Prompt]], np.ndarray]:
    """Reward factory (STYLE habit 7): returns reward(images (batch, H, W, 3) uint8, prompts)
    -> (batch,) float64, the verifier's score or correctness (cfg.reward)."""
    cfg = cfg or VerifierConfig()

    def reward(images: np.ndarray, prompts: Sequence[Prompt]) -> np.ndarray:
        if len(images) != len(prompts):
            raise ValueError(f"reward: {len(images)} images but {len(prompts)} prompts")
        verdicts = [verify(img, p, cfg) for img, p in zip(images, prompts, strict=True)]
        key = "score" if cfg.reward == "score" else "correct"
        return np.asarray([float(getattr(v, key)) for v in verdicts], dtype=np.float64)

    return reward
