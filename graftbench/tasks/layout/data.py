"""Document layouts: a PubLayNet-like procedural generator and padding (`files` reads and
writes them).

A layout is a page's list of elements, each a class id (index into `CLASSES`, PubLayNet's
five) and a box (x_center, y_center, width, height) normalised to the page, y down, as in
LayoutGAN++ (Kikuchi et al., ACM MM 2021). Elements are in reading order: column by column,
top to bottom.

The generator follows the structure of PubLayNet pages (Zhong et al., ICDAR 2019): margins,
one or two columns with a gutter, an optional title on top, then blocks stacked down each
column with small gaps. Its clean layouts never overlap and every element's left edge lies
on its column's (centred figures excepted), so the alignment and overlap metrics of
`graftbench.tasks.layout.metrics` are ~0 on them; that is what the base model learns.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from graftbench.config import Count, Natural, Probability

CLASSES = ("text", "title", "list", "table", "figure")
PAD = len(CLASSES)  # class id of padding slots
TEXT, TITLE, LIST, TABLE, FIGURE = range(len(CLASSES))

# Class of a block placed in a column body (a title after the page title is a section
# heading). Tuned so the generated frequencies follow PubLayNet's train split (text 72%,
# title 19%, list 2.5%, table 3.1%, figure 3.4%) while tables and figures still appear on
# enough pages to be learnt.
_BODY_CUM = np.cumsum([0.66, 0.15, 0.05, 0.07, 0.07]).tolist()
# Block height (fraction of the page) = lo + span * u**power, u ~ U[0, 1): text is skewed to
# short paragraphs with a long tail, titles are one or two lines.
_HEIGHT = {
    TEXT: (0.05, 0.45, 1.2),
    TITLE: (0.012, 0.025, 1.0),
    LIST: (0.06, 0.16, 1.0),
    TABLE: (0.10, 0.25, 1.0),
    FIGURE: (0.12, 0.25, 1.0),
}
_MIN_FLOW = 0.04  # text at least this high fills a column's leftover space (it flows on)
_NARROW_FIGURE = 0.4  # probability that a figure is narrower than its column and centred


@dataclass
class LayoutDataConfig:
    n_train: Count = 8000  # generated training layouts (the base model's data)
    n_test: Count = 1000  # generated held-out layouts (the reference for Maximum IoU)
    max_elements: Count = 10  # a page stops taking blocks once it has this many
    two_column_prob: Probability = 0.5  # probability that a page has two columns
    title_prob: Probability = 0.6  # probability that a page opens with a title above its body
    seed: Natural = 0  # seed of both splits (train and test come from independent streams)


# eq=False: the generated __eq__/__hash__ would compare arrays elementwise and fail.
@dataclass(frozen=True, eq=False)
class Layout:
    """One page: `classes` (n,) int64 class ids, `boxes` (n, 4) float64 (xc, yc, w, h), n >= 1."""

    classes: np.ndarray
    boxes: np.ndarray

    def __post_init__(self):
        classes = np.asarray(self.classes, dtype=np.int64)
        boxes = np.asarray(self.boxes, dtype=np.float64)
        n = len(classes)
        if classes.shape != (n,) or boxes.shape != (n, 4) or n < 1:
            raise ValueError(
                f"a layout needs classes (n,) and boxes (n, 4) with n >= 1, got "
                f"{classes.shape} and {boxes.shape}"
            )
        if classes.min() < 0 or classes.max() >= PAD:
            raise ValueError(f"class ids must lie in 0..{PAD - 1}, got {classes.tolist()}")
        object.__setattr__(self, "classes", classes)
        object.__setattr__(self, "boxes", boxes)

    def __len__(self) -> int:
        return len(self.classes)


def _page(u: Iterator[float], cfg: LayoutDataConfig) -> Layout:
    """Lay out one page, drawing uniforms in [0, 1) from `u`."""
    left, right = 0.07 + 0.05 * next(u), 0.07 + 0.05 * next(u)
    top, bottom = 0.06 + 0.04 * next(u), 1 - (0.06 + 0.04 * next(u))
    gap = 0.008 + 0.012 * next(u)  # one spacing per page, as a typeset page has
    two = next(u) < cfg.two_column_prob
    body = 1 - left - right
    gutter = 0.02 + 0.02 * next(u) if two else 0.0
    col_w = (body - gutter) / 2 if two else body
    col_x = [left, left + col_w + gutter] if two else [left]
    start = [top] * len(col_x)
    out = []  # (class, x0, y0, w, h)
    if next(u) < cfg.title_prob:
        full = not two or next(u) < 0.5  # spans the page, or heads the first column
        lo, span, _ = _HEIGHT[TITLE]
        h = lo + 2 * span * next(u)  # the page title may be a little taller than a heading
        out.append((TITLE, left, top, (body if full else col_w) * (0.5 + 0.5 * next(u)), h))
        start = [top + h + gap] * len(col_x) if full else [top + h + gap] + start[1:]
    for x, y in zip(col_x, start, strict=True):
        prev = None
        while len(out) < cfg.max_elements:
            # a heading is followed by its paragraph
            c = TEXT if prev == TITLE else bisect.bisect_right(_BODY_CUM, next(u))
            if c == TITLE and (len(out) + 1 == cfg.max_elements or y + 0.1 > bottom):
                c = TEXT  # a heading with no room for its paragraph would be orphaned
            lo, span, power = _HEIGHT[c]
            h = lo + span * next(u) ** power
            if y + h > bottom:
                if bottom - y < _MIN_FLOW:
                    break
                c, h = TEXT, bottom - y  # the column ends in a paragraph running on
            w, x0 = col_w, x
            if c == TITLE:
                w = col_w * (0.3 + 0.7 * next(u))
            elif c == FIGURE and next(u) < _NARROW_FIGURE:
                w = col_w * (0.5 + 0.4 * next(u))
                x0 = x + (col_w - w) / 2
            out.append((c, x0, y, w, h))
            y, prev = y + h + gap, c
    classes = np.array([e[0] for e in out], dtype=np.int64)
    ltwh = np.array([e[1:] for e in out], dtype=np.float64)
    return Layout(classes, np.concatenate([ltwh[:, :2] + ltwh[:, 2:] / 2, ltwh[:, 2:]], axis=1))


def generate(n: int, cfg: LayoutDataConfig, rng: np.random.Generator) -> list[Layout]:
    """`n` procedural PubLayNet-like layouts (see the module docstring)."""
    # All uniforms in one call: scalar draws from a numpy Generator cost ~1 us each, which
    # would dominate. A page draws at most 11 + 4 per element + 2 per column end.
    u = rng.random((n, 16 + 4 * cfg.max_elements))
    return [_page(iter(row), cfg) for row in u.tolist()]


def make_splits(cfg: LayoutDataConfig) -> tuple[list[Layout], list[Layout]]:
    """(train, test) from independent streams of `cfg.seed`."""
    train_seq, test_seq = np.random.SeedSequence(cfg.seed).spawn(2)
    train = generate(cfg.n_train, cfg, np.random.default_rng(train_seq))
    return train, generate(cfg.n_test, cfg, np.random.default_rng(test_seq))


def condition(layout: Layout) -> tuple[str, ...]:
    """The class names in order: the condition of the class-conditional layout task."""
    return tuple(CLASSES[c] for c in layout.classes)


def pad(layouts: Sequence[Layout], max_elements: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Batch layouts: boxes (batch, L, 4) float32 (0 at padding), classes (batch, L) int64
    (`PAD` at padding), mask (batch, L) bool, with L = `max_elements`."""
    boxes = np.zeros((len(layouts), max_elements, 4), np.float32)
    classes = np.full((len(layouts), max_elements), PAD, np.int64)
    mask = np.zeros((len(layouts), max_elements), bool)
    for i, layout in enumerate(layouts):
        n = len(layout)
        if n > max_elements:
            raise ValueError(f"layout {i} has {n} elements, more than max_elements={max_elements}")
        boxes[i, :n], classes[i, :n], mask[i, :n] = layout.boxes, layout.classes, True
    return boxes, classes, mask


def unpad(boxes: np.ndarray, classes: np.ndarray, mask: np.ndarray) -> list[Layout]:
    """Inverse of `pad`: the real slots of each row, in slot order."""
    return [Layout(c[m], b[m]) for b, c, m in zip(boxes, classes, mask, strict=True)]
