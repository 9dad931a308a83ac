"""Run records (atomic writes, JSON lines, checkpoints, grids) and the FLOP counter."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from graftbench import records
from graftbench.flops import count_flops, flops_per_sample
from graftbench.records import (
    append_jsonl,
    atomic_path,
    load_checkpoint,
    read_json,
    save_checkpoint,
    save_image_grid,
    write_json,
)

OLD = {"fid": 1.5, "step": 3}


@pytest.fixture
def old_file(tmp_path):
    path = tmp_path / "metrics.json"
    write_json(path, OLD)
    return path


def _assert_untouched(path):
    assert read_json(path) == OLD
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temp file left


def test_write_json_round_trip_and_conversions(tmp_path):
    path = tmp_path / "a" / "b" / "config.json"  # parents are created
    write_json(path, {"x": np.float32(0.5), "t": torch.tensor([1, 2]), "p": Path("/r")})
    assert read_json(path) == {"x": 0.5, "t": [1, 2], "p": "/r"}
    assert path.read_text().endswith("\n")


def test_failure_inside_block_keeps_old_file(old_file):
    with pytest.raises(RuntimeError, match="killed"):
        with atomic_path(old_file) as tmp:
            tmp.write_text('{"fid": ')  # half a file...
            raise RuntimeError("killed")  # ...then the run dies
    _assert_untouched(old_file)


def test_unserialisable_object_keeps_old_file(old_file):
    with pytest.raises(TypeError, match="cannot write object"):
        write_json(old_file, {"fid": object()})
    _assert_untouched(old_file)


def test_failed_rename_keeps_old_file(old_file, monkeypatch):
    def fail(src, dst):
        raise OSError("disk gone")

    monkeypatch.setattr(records.os, "replace", fail)
    with pytest.raises(OSError, match="disk gone"):
        write_json(old_file, {"fid": 9.0})
    monkeypatch.undo()
    _assert_untouched(old_file)


def test_successful_write_replaces_and_leaves_no_temp(old_file):
    write_json(old_file, {"fid": 2.0})
    assert read_json(old_file) == {"fid": 2.0}
    assert [p.name for p in old_file.parent.iterdir()] == [old_file.name]


def test_append_jsonl_lines_parse(tmp_path):
    path = tmp_path / "logs" / "metrics.jsonl"
    rows = [
        {"step": i, "loss": np.float64(1 / (i + 1)), "r": torch.tensor(0.5 * i)} for i in range(3)
    ]
    for row in rows:
        append_jsonl(path, row)
    lines = path.read_text().splitlines()
    assert len(lines) == 3
    parsed = [json.loads(line) for line in lines]
    assert parsed == [{"step": i, "loss": 1 / (i + 1), "r": 0.5 * i} for i in range(3)]


def test_checkpoint_embeds_config_and_versions(tmp_path):
    model = torch.nn.Linear(3, 2)
    config = {"method": "graft", "lr": 1e-4, "sample": {"steps": 10}}
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, {"model": model.state_dict(), "step": 7}, config, kind="test")
    ckpt = load_checkpoint(path, "test")
    assert ckpt["config"] == config and ckpt["step"] == 7
    for name, tensor in model.state_dict().items():
        assert torch.equal(ckpt["model"][name], tensor)
    assert set(ckpt["versions"]) == {"python", *records.VERSIONED_PACKAGES}
    # The distribution version drops the local build tag (2.x.y+cu130 -> 2.x.y).
    assert ckpt["versions"]["torch"] == torch.__version__.split("+")[0]
    assert ckpt["versions"]["numpy"] == np.__version__
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]


@pytest.mark.parametrize("channels, mode", [(1, "L"), (3, "RGB")])
@pytest.mark.parametrize("n, ncol", [(5, 4), (8, 8), (3, 8)])
def test_image_grid_size_and_placement(tmp_path, channels, mode, n, ncol):
    h, w = 6, 7
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, size=(n, h, w, channels), dtype=np.uint8)
    path = tmp_path / "grid.png"
    save_image_grid(path, images, ncol=ncol, min_side=1)  # no enlargement
    grid = Image.open(path)
    nrow = -(-n // ncol)
    # Every cell is (h + 2) x (w + 2) including a 2-pixel gap, plus a 2-pixel outer border.
    assert grid.format == "PNG" and grid.mode == mode
    assert grid.size == (ncol * (w + 2) + 2, nrow * (h + 2) + 2)  # PIL gives (width, height)
    pixels = np.asarray(grid).reshape(grid.size[1], grid.size[0], channels)
    for i, img in enumerate(images):
        r, c = divmod(i, ncol)
        top, left = 2 + r * (h + 2), 2 + c * (w + 2)
        assert np.array_equal(pixels[top : top + h, left : left + w], img)
    assert (pixels[:2] == 255).all() and (pixels[:, :2] == 255).all()


def test_image_grid_enlarges_small_images(tmp_path):
    images = np.arange(2 * 16 * 16, dtype=np.uint8).reshape(2, 16, 16, 1)
    save_image_grid(tmp_path / "g.png", images, ncol=2, min_side=48)
    pixels = np.asarray(Image.open(tmp_path / "g.png"))
    assert pixels.shape == (48 + 4, 2 * 50 + 2)
    # each source pixel became a 3x3 block
    assert np.array_equal(pixels[2:50, 2:50], images[0, :, :, 0].repeat(3, 0).repeat(3, 1))


def test_linear_flops():
    layer = torch.nn.Linear(16, 32)
    x = torch.randn(4, 16)
    # One multiply-add per (row, in, out) triple, 2 FLOPs each; the bias add is not counted.
    assert count_flops(lambda: layer(x)) == 2 * 4 * 16 * 32
    assert flops_per_sample(layer, x) == 2 * 16 * 32
