"""Layout metrics against hand-computed values (boxes are (xc, yc, w, h) on a unit page)."""

from __future__ import annotations

import math
from itertools import permutations

import numpy as np
import pytest

from graftbench.config import ConfigError, parse
from graftbench.tasks.layout.data import CLASSES, Layout, LayoutDataConfig, make_splits, pad
from graftbench.tasks.layout.metrics import (
    RewardConfig,
    _pair_scores,
    alignment,
    iou,
    max_iou,
    overlap,
    reward,
)

TEXT, TITLE, FIGURE = CLASSES.index("text"), CLASSES.index("title"), CLASSES.index("figure")


def batch(*boxes):
    """One layout of real elements: boxes (1, n, 4), mask (1, n)."""
    return np.array([boxes], dtype=np.float64), np.ones((1, len(boxes)), bool)


def test_left_aligned_pair_has_zero_alignment():
    # left edges both at 0.1; nothing else coincides
    boxes, mask = batch((0.2, 0.2, 0.2, 0.1), (0.15, 0.6, 0.1, 0.3))
    assert alignment(boxes, mask)[0] == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize(
    "a, b, d",
    [
        # same size, shifted by (0.3, 0.05): x lines differ by 0.3, y lines by 0.05
        ((0.2, 0.2, 0.1, 0.1), (0.5, 0.25, 0.1, 0.1), 0.05),
        # line differences: left .25, xc .3, right .35, top .3, yc .4, bottom .5
        ((0.2, 0.2, 0.1, 0.1), (0.5, 0.6, 0.2, 0.3), 0.25),
    ],
)
def test_unaligned_pair_scores_minus_log_one_minus_d(a, b, d):
    boxes, mask = batch(a, b)
    # both elements have the same nearest line distance d, so the mean is -log(1 - d)
    assert alignment(boxes, mask)[0] == pytest.approx(-math.log(1 - d), rel=1e-9)


def test_alignment_takes_each_elements_nearest_partner():
    # A and B share a left edge (d = 0 each); C (bottom .78) is nearest to B's bottom (.6),
    # every other line pair being further apart, so d_C = 0.18
    boxes, mask = batch((0.2, 0.15, 0.2, 0.1), (0.15, 0.5, 0.1, 0.2), (0.75, 0.75, 0.1, 0.06))
    assert alignment(boxes, mask)[0] == pytest.approx(-math.log(1 - 0.18) / 3, rel=1e-9)


def test_identical_boxes_overlap_one():
    boxes, mask = batch((0.5, 0.5, 0.2, 0.2), (0.5, 0.5, 0.2, 0.2))
    assert overlap(boxes, mask)[0] == pytest.approx(1.0)  # (1 + 1) / 2 elements


def test_disjoint_boxes_overlap_zero():
    boxes, mask = batch((0.2, 0.2, 0.2, 0.2), (0.7, 0.7, 0.2, 0.2))
    assert overlap(boxes, mask)[0] == 0.0


@pytest.mark.parametrize(
    "b, expected",
    [
        # same size, half covered: 0.02 / 0.04 each way -> (0.5 + 0.5) / 2
        ((0.4, 0.5, 0.2, 0.2), 0.5),
        # B = [.35, .45] x [.45, .55]: intersection .05 x .1 = .005;
        # .005 / .04 (A) + .005 / .01 (B) = .625, over 2 elements
        ((0.4, 0.5, 0.1, 0.1), 0.3125),
    ],
)
def test_partial_overlap_by_hand(b, expected):
    boxes, mask = batch((0.3, 0.5, 0.2, 0.2), b)  # A = [.2, .4] x [.4, .6]
    assert overlap(boxes, mask)[0] == pytest.approx(expected, rel=1e-9)


def test_zero_area_box_gives_no_nan():
    boxes, mask = batch((0.5, 0.5, 0.0, 0.2), (0.5, 0.5, 0.2, 0.2))
    # the zero-area box contributes 0 and the other one's intersection with it is 0
    assert overlap(boxes, mask)[0] == 0.0


def test_padding_is_ignored():
    rng = np.random.default_rng(0)
    boxes, mask = batch((0.3, 0.5, 0.2, 0.2), (0.4, 0.52, 0.1, 0.1), (0.8, 0.1, 0.1, 0.1))
    garbage = rng.uniform(0, 1, (1, 4, 4))
    padded = np.concatenate([boxes, garbage], axis=1)
    padded_mask = np.concatenate([mask, np.zeros((1, 4), bool)], axis=1)
    for metric in (alignment, overlap):
        assert metric(padded, padded_mask)[0] == pytest.approx(metric(boxes, mask)[0], rel=1e-12)
        assert metric(padded, padded_mask)[0] > 0  # the real elements do score


def test_single_element_scores_zero():
    boxes, mask = batch((0.37, 0.41, 0.2, 0.3))
    assert alignment(boxes, mask)[0] == 0.0
    assert overlap(boxes, mask)[0] == 0.0


def test_reward_is_one_when_aligned_and_falls_with_misalignment():
    cfg = RewardConfig()
    aligned, mask = batch((0.3, 0.2, 0.4, 0.1), (0.3, 0.5, 0.4, 0.3))
    assert reward(aligned, mask, cfg)[0] == pytest.approx(1.0)
    values = []
    for shift in (0.01, 0.03, 0.1):
        boxes, mask = batch((0.3, 0.2, 0.4, 0.1), (0.3 + shift, 0.5, 0.4, 0.3))
        values.append(reward(boxes, mask, cfg)[0])
    assert 1 > values[0] > values[1] > values[2] > 0
    # by hand: the x lines are `shift` apart, the y lines >= 0.3; no overlap; so
    # reward = exp(-10 * -log(1 - shift)) = (1 - shift) ** 10
    assert values[0] == pytest.approx(0.99**10, rel=1e-9)


def test_reward_config_validation_names_the_key():
    with pytest.raises(ConfigError, match="layout.reward.alignment_weight: -1.0 is out of"):
        parse(RewardConfig, {"alignment_weight": -1.0}, "layout.reward")
    with pytest.raises(ConfigError, match="layout.reward.overlap_weight: nan is out of"):
        parse(RewardConfig, {"overlap_weight": float("nan")}, "layout.reward")


def test_iou_identical_disjoint_and_by_hand():
    a = np.array([0.2, 0.2, 0.2, 0.2])
    assert iou(a, a) == pytest.approx(1.0)
    assert iou(a, np.array([0.8, 0.8, 0.2, 0.2])) == 0.0
    # [.1, .3]^2 vs [.2, .4] x [.1, .3]: .02 / (.04 + .04 - .02)
    assert iou(a, np.array([0.3, 0.2, 0.2, 0.2])) == pytest.approx(1 / 3)
    assert iou(a[None, None], np.stack([a, a])[None]).shape == (1, 2)  # broadcasts


def layout(classes, boxes):
    return Layout(np.array(classes), np.array(boxes, dtype=np.float64))


A = layout(
    [TEXT, TEXT, FIGURE], [[0.3, 0.2, 0.4, 0.1], [0.3, 0.5, 0.4, 0.3], [0.75, 0.5, 0.3, 0.3]]
)
B = layout([TITLE, TEXT], [[0.5, 0.1, 0.8, 0.05], [0.5, 0.5, 0.8, 0.5]])


def shifted(lay: Layout, dx: float) -> Layout:
    return Layout(lay.classes, lay.boxes + np.array([dx, 0, 0, 0]))


def test_max_iou_of_a_set_with_itself_is_one():
    # elements listed in another order, and layouts in another order: matching finds them
    a_perm = layout(A.classes[[2, 1, 0]], A.boxes[[2, 1, 0]])
    assert max_iou([A, B], [B, a_perm]) == pytest.approx(1.0)


def test_max_iou_against_a_shifted_copy_by_hand():
    # every element keeps its height and slides by dx: IoU = (w - dx) / (w + dx)
    dx = 0.05
    expected = np.mean([(w - dx) / (w + dx) for w in A.boxes[:, 2]])
    assert max_iou([shifted(A, dx)], [A]) == pytest.approx(expected, rel=1e-9)


def test_max_iou_matches_only_same_class_multisets():
    # only B's group is shared; A's group has no real partner and is left out
    assert max_iou([A, B], [B, shifted(B, 0.9)]) == pytest.approx(1.0)
    other = layout([TEXT, TEXT], [[0.5, 0.1, 0.8, 0.05], [0.5, 0.5, 0.8, 0.5]])
    assert math.isnan(max_iou([B], [other]))  # same boxes, different class multiset


@pytest.mark.parametrize("counts", [(1, 2), (3, 1), (4,), (5, 1), (6,)])
def test_pair_scores_equal_the_best_matching_found_by_enumeration(counts):
    """The batched scores (enumerated matchings for k <= 4, Hungarian above) against every
    one-to-one matching of same-class elements tried by hand, pair by pair."""
    rng = np.random.default_rng(sum(counts))
    classes = np.repeat([TEXT, FIGURE][: len(counts)], counts)

    def random_layout():
        return Layout(
            classes,
            np.column_stack(
                [
                    rng.uniform(0.2, 0.8, (len(classes), 2)),
                    rng.uniform(0.05, 0.4, (len(classes), 2)),
                ]
            ),
        )

    gens, reals = [random_layout() for _ in range(3)], [random_layout() for _ in range(4)]
    scores = _pair_scores(gens, reals)
    for i, g in enumerate(gens):
        for j, r in enumerate(reals):
            best = 0.0
            for c in np.unique(classes):
                m = iou(g.boxes[classes == c][:, None], r.boxes[classes == c][None, :])
                best += max(
                    sum(m[a, p[a]] for a in range(len(m))) for p in permutations(range(len(m)))
                )
            assert scores[i, j] == pytest.approx(best / len(classes), rel=1e-12)
    assert scores.max() < 1  # random boxes: no pair coincides, so the check is not trivial


def test_clean_generated_layouts_are_aligned_and_do_not_overlap():
    _, test = make_splits(LayoutDataConfig(n_train=1, n_test=500))
    boxes, _, mask = pad(test, 10)
    assert overlap(boxes, mask).max() == 0.0
    assert alignment(boxes, mask).mean() < 1e-6  # float32 rounding only
    assert reward(boxes, mask, RewardConfig()).min() > 0.9999
