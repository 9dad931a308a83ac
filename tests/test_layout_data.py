"""Layout data: generator invariants, padding, the JSON and COCO readers, the renderer."""

from __future__ import annotations

import json

import numpy as np
import pytest

from graftbench.config import ConfigError, InputError, parse
from graftbench.tasks.layout.data import (
    CLASSES,
    PAD,
    Layout,
    LayoutDataConfig,
    condition,
    generate,
    make_splits,
    pad,
    unpad,
)
from graftbench.tasks.layout.files import load_coco, read_json, write_json
from graftbench.tasks.layout.render import grid, legend, render

CFG = LayoutDataConfig(n_train=2000, n_test=300)


@pytest.fixture(scope="module")
def splits():
    return make_splits(CFG)


def ltrb(boxes):
    xc, yc, w, h = boxes.T
    return xc - w / 2, yc - h / 2, xc + w / 2, yc + h / 2


def test_generated_layouts_are_valid_pages(splits):
    for lay in splits[0]:
        left, top, right, bottom = ltrb(lay.boxes)
        assert 1 <= len(lay) <= CFG.max_elements
        assert lay.classes.dtype == np.int64 and lay.boxes.dtype == np.float64
        assert ((lay.classes >= 0) & (lay.classes < len(CLASSES))).all()
        assert (lay.boxes[:, 2:] > 0).all()
        assert left.min() >= -1e-9 and top.min() >= -1e-9
        assert right.max() <= 1 + 1e-9 and bottom.max() <= 1 + 1e-9


def test_generated_elements_never_overlap(splits):
    for lay in splits[0]:
        left, top, right, bottom = ltrb(lay.boxes)
        iw = np.minimum(right[:, None], right) - np.maximum(left[:, None], left)
        ih = np.minimum(bottom[:, None], bottom) - np.maximum(top[:, None], top)
        inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
        np.fill_diagonal(inter, 0)
        assert inter.max() <= 1e-12


def test_generation_is_deterministic_and_splits_differ(splits):
    train, test = splits
    train2, test2 = make_splits(CFG)
    assert len(train) == CFG.n_train and len(test) == CFG.n_test
    for a, b in zip(train + test, train2 + test2, strict=True):
        np.testing.assert_array_equal(a.classes, b.classes)
        np.testing.assert_array_equal(a.boxes, b.boxes)
    assert not np.array_equal(train[0].boxes, test[0].boxes)
    other = make_splits(LayoutDataConfig(n_train=5, n_test=5, seed=1))[0]
    assert not np.array_equal(other[0].boxes, train[0].boxes)


def test_class_frequencies_and_columns_look_like_publaynet(splits):
    counts = np.bincount(np.concatenate([lay.classes for lay in splits[0]]), minlength=5)
    assert counts.argmax() == CLASSES.index("text")
    assert counts[CLASSES.index("title")] > max(counts[2:])  # headings next most common
    assert (counts > 0).all()
    # a page is two-column when some element starts right of the page's middle
    two = [(ltrb(lay.boxes)[0] > 0.45).any() for lay in splits[0]]
    assert 0.3 < np.mean(two) < 0.7  # two_column_prob = 0.5 (an emptied column can hide one)


def test_max_elements_caps_every_page():
    cfg = LayoutDataConfig(max_elements=3)
    lays = generate(500, cfg, np.random.default_rng(0))
    assert max(len(lay) for lay in lays) == 3


def test_condition_names_classes_in_order():
    lay = Layout(np.array([1, 0, 4]), np.full((3, 4), 0.1))
    assert condition(lay) == ("title", "text", "figure")


def test_pad_unpad_round_trip(splits):
    lays = splits[1][:50]
    boxes, classes, mask = pad(lays, 12)
    assert boxes.shape == (50, 12, 4) and boxes.dtype == np.float32
    assert classes.dtype == np.int64 and mask.dtype == bool
    assert (classes[~mask] == PAD).all() and (boxes[~mask] == 0).all()
    for a, b in zip(lays, unpad(boxes, classes, mask), strict=True):
        np.testing.assert_array_equal(a.classes, b.classes)
        np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-7)  # through float32
    with pytest.raises(ValueError, match="more than max_elements"):
        pad(lays, 1)


def test_json_round_trip_keeps_extra_keys(splits, tmp_path):
    lays = splits[1][:20]
    path = tmp_path / "sub" / "layouts.json"
    write_json(lays, path, extra=[{"reward": float(i)} for i in range(20)])
    data = json.loads(path.read_text())
    assert data["classes"] == list(CLASSES) and data["layouts"][3]["reward"] == 3.0
    assert [p.name for p in path.parent.iterdir()] == ["layouts.json"]  # no temp file left
    for a, b in zip(lays, read_json(path), strict=True):
        np.testing.assert_array_equal(a.classes, b.classes)
        np.testing.assert_array_equal(a.boxes, b.boxes)


GOOD = {"classes": ["text"], "boxes": [[0.5, 0.5, 0.2, 0.2]]}


@pytest.mark.parametrize(
    "bad, words",
    [
        ({"classes": ["caption"], "boxes": [[0.5, 0.5, 0.2, 0.2]]}, "'caption' is not one of"),
        ({"classes": ["text"], "boxes": [[0.5, 0.5, 0.2]]}, "boxes[0] is not 4 finite"),
        ({"classes": ["text"], "boxes": [[0.5, float("nan"), 0.2, 0.2]]}, "not 4 finite"),
        ({"classes": ["text", "title"], "boxes": [[0.5, 0.5, 0.2, 0.2]]}, "2 classes and 1"),
        ({"classes": [], "boxes": []}, "at least 1"),
        ({"boxes": [[0.5, 0.5, 0.2, 0.2]]}, "'classes' and 'boxes' lists"),
    ],
)
def test_read_json_errors_name_file_and_layout(tmp_path, bad, words):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"layouts": [GOOD, bad]}))
    with pytest.raises(InputError) as err:
        read_json(path)
    assert str(path) in str(err.value) and "layouts[1]" in str(err.value)
    assert words in str(err.value)


def test_read_json_missing_file_and_bad_json(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        read_json(tmp_path / "absent.json")
    (tmp_path / "broken.json").write_text('{"layouts": [\n')
    with pytest.raises(InputError, match="broken.json:2: not valid JSON"):
        read_json(tmp_path / "broken.json")


def coco():
    """Two kept images (ids 1 and 2, listed out of order), one over the cap, one empty."""
    return {
        "images": [
            {"id": 2, "width": 200, "height": 100},
            {"id": 1, "width": 100, "height": 200},
            {"id": 3, "width": 100, "height": 100},
            {"id": 4, "width": 100, "height": 100},
        ],
        "categories": [
            {"id": 1, "name": "Text"},
            {"id": 2, "name": "TITLE"},
            {"id": 5, "name": "figure"},
        ],
        "annotations": [
            {"image_id": 1, "category_id": 1, "bbox": [60, 20, 30, 40]},  # right column
            {"image_id": 2, "category_id": 5, "bbox": [20, 10, 160, 50]},
            {"image_id": 1, "category_id": 2, "bbox": [10, 100, 30, 10]},  # left, lower
            {"image_id": 1, "category_id": 1, "bbox": [10, 10, 30, 50]},  # left, top
        ]
        + [{"image_id": 3, "category_id": 1, "bbox": [10, 10 + 20 * k, 80, 10]} for k in range(4)],
    }


def test_load_coco_by_hand(tmp_path):
    path = tmp_path / "coco.json"
    path.write_text(json.dumps(coco()))
    lays = load_coco(path, max_elements=3)
    assert len(lays) == 2  # image 3 has 4 > 3 elements, image 4 none
    first, second = lays  # image-id order
    assert condition(first) == ("text", "title", "text")  # left column top-down, then right
    # image 1 is 100 x 200: [10, 10, 30, 50] -> centre (25/100, 35/200), size (.3, .25)
    np.testing.assert_allclose(
        first.boxes, [[0.25, 0.175, 0.3, 0.25], [0.25, 0.525, 0.3, 0.05], [0.75, 0.2, 0.3, 0.2]]
    )
    # image 2 is 200 x 100: [20, 10, 160, 50] -> centre (100/200, 35/100), size (.8, .5)
    np.testing.assert_allclose(second.boxes, [[0.5, 0.35, 0.8, 0.5]])
    assert len(load_coco(path, max_elements=4)) == 3


def test_load_coco_keeps_midline_blocks_in_one_column(tmp_path):
    # a one-column page: the top block's centre is just right of the midline (0.51)
    data = coco()
    data["annotations"] = [
        {"image_id": 4, "category_id": 1, "bbox": [10, 40, 80, 20]},
        {"image_id": 4, "category_id": 2, "bbox": [10, 10, 82, 20]},
    ]
    path = tmp_path / "coco.json"
    path.write_text(json.dumps(data))
    (lay,) = load_coco(path, max_elements=10)
    assert condition(lay) == ("title", "text")


def test_load_coco_errors(tmp_path):
    path = tmp_path / "coco.json"
    data = coco()
    data["categories"].append({"id": 9, "name": "caption"})
    path.write_text(json.dumps(data))
    with pytest.raises(InputError) as err:
        load_coco(path, 10)
    assert str(path) in str(err.value) and "'caption'" in str(err.value)
    assert ", ".join(CLASSES) in str(err.value)

    data = coco()
    del data["annotations"]
    path.write_text(json.dumps(data))
    with pytest.raises(InputError, match="'annotations' is missing"):
        load_coco(path, 10)

    data = coco()
    del data["annotations"][2]["bbox"]
    path.write_text(json.dumps(data))
    with pytest.raises(InputError, match=r"annotations\[2\]: 'bbox' is missing"):
        load_coco(path, 10)

    with pytest.raises(InputError, match="no such file"):
        load_coco(tmp_path / "absent.json", 10)


@pytest.mark.parametrize(
    "key, value",
    [
        ("n_train", 0),
        ("n_test", -1),
        ("max_elements", 0),
        ("two_column_prob", 1.5),
        ("title_prob", -0.1),
        ("seed", -1),
    ],
)
def test_config_validation_names_the_key(key, value):
    with pytest.raises(ConfigError, match=f"layout.data.{key}: {value} is out of range"):
        parse(LayoutDataConfig, {key: value}, "layout.data")


def test_render_draws_boxes_on_a_white_page():
    lay = Layout(np.array([0, 4]), np.array([[0.25, 0.25, 0.3, 0.3], [0.75, 0.75, 0.2, 0.2]]))
    img = render(lay, size=64)
    assert img.shape == (64, 64, 3) and img.dtype == np.uint8
    assert (img[16, 16] < 255).any() and (img[48, 48] < 255).any()  # inside the boxes
    assert (img[16, 48] == 255).all() and (img[1, 62] == 255).all()  # outside them
    assert not np.array_equal(img[16, 16], img[48, 48])  # class colours differ
    assert grid([lay] * 5, ncol=3, size=32, pad=2).shape == (2 * 34 + 2, 3 * 34 + 2, 3)
    assert list(legend()) == list(CLASSES)
