"""Layout quality metrics of the layout-generation literature, and the task's reward.

Boxes are (x_center, y_center, width, height) normalised to the page, padded to
(batch, L, 4) with a (batch, L) bool mask of the real elements (`graftbench.tasks.layout.data.pad`).
`alignment` and `overlap` follow LayoutGAN++'s evaluation code (Kikuchi et al., "Constrained
Graphic Layout Generation via Latent Optimization", ACM MM 2021; upstream
ktrk115/const_layout, metric.py: compute_alignment, compute_overlap, compute_maximum_iou),
re-derived here in numpy with the differences noted per function.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import permutations

import numpy as np

from graftbench.config import NonNegative
from graftbench.tasks.layout.data import Layout

# Keeps -log(1 - d) finite for boxes so far outside the page that d >= 1.
_MAX_D = 1 - 1e-6


def _ltrb(boxes: np.ndarray) -> tuple[np.ndarray, ...]:
    """(..., 4) centre boxes -> left, top, right, bottom, each (...)."""
    xc, yc, w, h = np.moveaxis(np.asarray(boxes, dtype=np.float64), -1, 0)
    return xc - w / 2, yc - h / 2, xc + w / 2, yc + h / 2


def _intersection(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, ...]:
    """Intersection area, area of a, area of b for centre boxes a, b (..., 4), broadcast."""
    l1, t1, r1, b1 = _ltrb(a)
    l2, t2, r2, b2 = _ltrb(b)
    iw = np.clip(np.minimum(r1, r2) - np.maximum(l1, l2), 0, None)
    ih = np.clip(np.minimum(b1, b2) - np.maximum(t1, t2), 0, None)
    return iw * ih, (r1 - l1) * (b1 - t1), (r2 - l2) * (b2 - t2)


def alignment(boxes: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Alignment score (batch,); lower is better, 0 when every element shares a line.

    After Lee et al. 2020 ("Neural Design Network") and Li et al. 2020 ("Attribute-conditioned
    Layout GAN", Sec. 3.6.4) as LayoutGAN++ computes it: for element
    i, d_i = min over other real elements j and over the six lines k (left, x-centre, right,
    top, y-centre, bottom) of |line_k(i) - line_k(j)|; the score is the mean over real
    elements of -log(1 - d_i). An element with no other element scores 0. Unlike upstream,
    padding slots are excluded as partners j too (upstream only masks i), and d is capped
    just below 1 rather than an exact 1 being mapped to 0.
    """
    mask = np.asarray(mask, dtype=bool)
    left, top, right, bottom = _ltrb(boxes)
    xc, yc = (left + right) / 2, (top + bottom) / 2
    lines = np.stack([left, xc, right, top, yc, bottom], axis=-1)  # (batch, L, 6)
    diff = np.abs(lines[:, :, None, :] - lines[:, None, :, :]).min(-1)  # (batch, L, L)
    partner = mask[:, None, :] & ~np.eye(mask.shape[1], dtype=bool)
    d = np.where(partner, diff, np.inf).min(-1)  # (batch, L)
    has = mask & np.isfinite(d)
    score = np.where(has, -np.log1p(-np.minimum(np.where(has, d, 0), _MAX_D)), 0.0)
    return score.sum(-1) / np.maximum(mask.sum(-1), 1)


def overlap(boxes: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Overlap score (batch,); 0 when no two real elements intersect.

    After Li et al. 2020 ("Attribute-conditioned Layout GAN", Sec. 3.6.3) as LayoutGAN++
    computes it: sum over ordered pairs i != j of area(i & j) / area(i), divided by the
    number of real elements (two identical boxes score (1 + 1) / 2 = 1). A zero-area box
    contributes 0, and a layout without real elements scores 0.
    """
    mask = np.asarray(mask, dtype=bool)
    boxes = np.asarray(boxes, dtype=np.float64)
    inter, area, _ = _intersection(boxes[:, :, None], boxes[:, None, :])  # i on axis 1
    pair = mask[:, :, None] & mask[:, None, :] & ~np.eye(mask.shape[1], dtype=bool)
    ratio = np.divide(inter, area, out=np.zeros_like(inter), where=pair & (area > 0))
    return ratio.sum((1, 2)) / np.maximum(mask.sum(-1), 1)


@dataclass
class RewardConfig:
    """reward = exp(-(alignment_weight * alignment + overlap_weight * overlap)), in (0, 1].

    1 for a perfectly aligned layout without overlap: a combined aesthetic reward in the
    spirit of the layout literature's alignment and overlap losses. Alignment is weighted up
    because it stays small even when misalignment is plain to see: every element 2% of the
    page off its nearest line scores -log(0.98) = 0.02.
    """

    alignment_weight: NonNegative = 10.0  # weight of `alignment` in the exponent
    overlap_weight: NonNegative = 1.0  # weight of `overlap` in the exponent


def reward(boxes: np.ndarray, mask: np.ndarray, cfg: RewardConfig) -> np.ndarray:
    """The task's reward (batch,) float64 in (0, 1]; see `RewardConfig`."""
    align, over = alignment(boxes, mask), overlap(boxes, mask)
    return np.exp(-(cfg.alignment_weight * align + cfg.overlap_weight * over))


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of centre boxes a (..., 4) and b (..., 4), broadcast; 0 when
    the union is empty."""
    inter, area_a, area_b = _intersection(a, b)
    union = area_a + area_b - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def _pair_scores(gens: Sequence[Layout], reals: Sequence[Layout]) -> np.ndarray:
    """(len(gens), len(reals)): for each pair of layouts sharing one class multiset, the sum
    over classes of the best one-to-one IoU matching of same-class elements, over n. Batched
    over all pairs (a Python loop over pairs took 3.5 s per layout evaluation): a class with
    k <= 4 elements takes the best of its k! matchings directly, larger ones go through
    `linear_sum_assignment` pair by pair. Both give the optimal matching's value."""
    from scipy.optimize import linear_sum_assignment

    classes = gens[0].classes
    total = np.zeros((len(gens), len(reals)))
    for c in np.unique(classes):
        g = np.stack([x.boxes[x.classes == c] for x in gens])  # (G, k, 4)
        r = np.stack([x.boxes[x.classes == c] for x in reals])  # (R, k, 4)
        m = iou(g[:, None, :, None], r[None, :, None, :])  # (G, R, k, k)
        k = m.shape[-1]
        if k <= 4:
            rows = np.arange(k)
            total += np.max([m[..., rows, list(p)].sum(-1) for p in permutations(rows)], axis=0)
            continue
        for i, j in np.ndindex(*m.shape[:2]):
            a, b = linear_sum_assignment(m[i, j], maximize=True)
            total[i, j] += m[i, j][a, b].sum()
    return total / len(classes)


def max_iou(generated: Sequence[Layout], real: Sequence[Layout]) -> float:
    """LayoutGAN++'s Maximum IoU (Kikuchi et al. 2021): higher is closer to `real`.

    Layouts are grouped by their multiset of classes; within each group present in both
    sets, generated and real layouts are matched one-to-one maximising `_pair_scores`, and
    the matched scores of all groups are averaged. NaN when no group is shared.
    """
    from scipy.optimize import linear_sum_assignment

    groups: dict[tuple, tuple[list, list]] = defaultdict(lambda: ([], []))
    for side, layouts in enumerate((generated, real)):
        for layout in layouts:
            groups[tuple(sorted(layout.classes.tolist()))][side].append(layout)
    matched = []
    for gens, reals in groups.values():
        if gens and reals:
            scores = _pair_scores(gens, reals)
            rows, cols = linear_sum_assignment(scores, maximize=True)
            matched.extend(scores[rows, cols])
    return float(np.mean(matched)) if matched else float("nan")
