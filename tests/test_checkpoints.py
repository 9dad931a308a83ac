"""Checkpoints (graftbench.checkpoints via records): a safetensors file whose header holds the
config, the state's structure, its kind and hashes. What goes in comes back equal; equal
content gives equal hashes and bytes; anything wrong with a file is one InputError line
naming it, and nothing is ever unpickled."""

from __future__ import annotations

import math
import os
import pickle
from collections import OrderedDict

import numpy as np
import pytest
import torch

from graftbench import records
from graftbench.config import ConfigError, InputError


def _training_state(seed: int = 0) -> dict:
    """What train.fit checkpoints, after a few steps, plus the awkward cases."""
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.BatchNorm1d(8), torch.nn.Linear(8, 1))
    opt = torch.optim.AdamW(net.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 3))
    g = torch.Generator().manual_seed(seed)
    for _ in range(3):
        net(torch.randn(4, 3, generator=g)).pow(2).mean().backward()
        opt.step()
        sched.step()
        opt.zero_grad()
    grid = torch.arange(12.0).view(3, 4)
    return {
        "model": net.state_dict(),
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "generator": g.get_state(),
        "step": 3,
        "best": {"loss": math.inf, "step": None, "bad": 0, "neg": -math.inf, "zero": -0.0},
        "nested": [1, (2.5, "x", None, True), {3: [4, 5], (1, "a"): (), "$odd": "key"}, []],
        "view": grid.t(),  # not contiguous
        "same": grid,  # shares storage with "view"
        "half": torch.ones(2, 2, dtype=torch.bfloat16),
        "empty": torch.zeros(0, 5),
        "scalar": torch.tensor(7, dtype=torch.int64),
        "array": np.arange(6, dtype=np.int16).reshape(2, 3),
        "npfloat": np.float32(0.25),
        "flag": torch.tensor([True, False]),
    }


def _assert_equal(a, b, where="state"):
    assert type(a) is type(b), where
    if isinstance(a, dict):
        assert list(a) == list(b), where
        assert getattr(a, "_metadata", None) == getattr(b, "_metadata", None), where
        for k in a:
            _assert_equal(a[k], b[k], f"{where}/{k}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_equal(x, y, f"{where}/{i}")
    elif isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b), where
    elif isinstance(a, np.ndarray | np.generic):
        assert a.dtype == b.dtype and np.array_equal(a, b), where
    elif isinstance(a, float) and math.isnan(a):
        assert math.isnan(b), where
    else:
        assert a == b and str(a) == str(b), where  # str: -0.0 stays -0.0


def test_round_trip_of_a_training_state(tmp_path):
    state = _training_state()
    config = {"lr": 1e-2, "betas": (0.9, 0.99), "limit": math.inf, "nan": math.nan, "keys": {1: 2}}
    path = tmp_path / "model.pt"
    records.save_checkpoint(path, state, config, kind="training state")
    ckpt = records.load_checkpoint(path, "training state")
    assert ckpt.kind == "training state"
    _assert_equal({k: ckpt[k] for k in state}, state)
    _assert_equal(ckpt["config"], config)
    assert set(ckpt) == {*state, "config", "versions"}
    # state dicts keep _metadata (load_state_dict reads BatchNorm's version from it)
    assert ckpt["model"]._metadata == state["model"]._metadata
    assert isinstance(ckpt["model"], OrderedDict)
    assert all(isinstance(k, int) for k in ckpt["optimizer"]["state"])
    # and everything loads back into live objects, which then carry on identically
    torch.manual_seed(1)
    net = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.BatchNorm1d(8), torch.nn.Linear(8, 1))
    net.load_state_dict(ckpt["model"])
    opt = torch.optim.AdamW(net.parameters(), lr=1e-2)
    opt.load_state_dict(ckpt["optimizer"])
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    sched.load_state_dict(ckpt["scheduler"])
    g = torch.Generator()
    g.set_state(ckpt["generator"])
    want = torch.Generator()
    want.set_state(state["generator"])
    assert torch.equal(torch.rand(5, generator=g), torch.rand(5, generator=want))
    assert sched.get_last_lr() == [pytest.approx(1e-2)]


def test_header_alone_and_config_types(tmp_path):
    path = tmp_path / "m.pt"
    config = {"model": {"dims": (8, 16)}, "path": tmp_path}
    records.save_checkpoint(path, {"model": {"w": torch.ones(2)}}, config, kind="toy2d model")
    header = records.checkpoint_header(path, "toy2d model")
    assert header["config"] == config and header["kind"] == "toy2d model"
    assert header["content_sha256"] == records.load_checkpoint(path).content_sha256


def test_a_header_length_that_looks_like_a_pickle_still_loads(tmp_path):
    """The header's length is the first 8 bytes: its first byte can be 0x80, a pickle's."""
    path = tmp_path / "m.pt"
    for pad in range(0, 300, 8):
        records.save_checkpoint(path, {"w": torch.ones(1)}, {"pad": "x" * pad}, kind="test")
        if path.read_bytes()[0] == 0x80:
            assert records.load_checkpoint(path, "test")["config"]["pad"] == "x" * pad
            return
    pytest.fail("no padding gave a header length whose first byte is 0x80")


def test_equal_content_gives_equal_hash_and_bytes(tmp_path):
    a, b, c = tmp_path / "a.pt", tmp_path / "b.pt", tmp_path / "c.pt"
    records.save_checkpoint(a, _training_state(0), {"seed": 0}, kind="training state")
    records.save_checkpoint(b, _training_state(0), {"seed": 0}, kind="training state")
    records.save_checkpoint(c, _training_state(1), {"seed": 0}, kind="training state")
    ha, hb, hc = (records.load_checkpoint(p).content_sha256 for p in (a, b, c))
    assert ha == hb != hc
    assert a.read_bytes() == b.read_bytes()


def test_views_shared_and_offset_tensors_are_saved_as_their_values(tmp_path):
    base = torch.arange(20.0)
    state = {
        "tail": base[15:],
        "every_other": base[::2],
        "whole": base,
        "col": base.view(4, 5)[:, 1],
    }
    records.save_checkpoint(tmp_path / "v.pt", state, {}, kind="test")
    ckpt = records.load_checkpoint(tmp_path / "v.pt", "test")
    for k, v in state.items():
        assert torch.equal(ckpt[k], v) and ckpt[k].is_contiguous(), k
    ckpt["whole"][0] = 99  # loaded tensors own their memory
    assert ckpt["tail"][0] == 15


@pytest.mark.gpu
def test_gpu_tensors_are_saved_as_cpu_values(tmp_path):
    x = torch.randn(4, 4, device="cuda")
    records.save_checkpoint(
        tmp_path / "g.pt", {"x": x.t(), "rng": torch.cuda.get_rng_state()}, {}, kind="test"
    )
    ckpt = records.load_checkpoint(tmp_path / "g.pt", "test")
    assert ckpt["x"].device.type == "cpu" and torch.equal(ckpt["x"], x.t().cpu())


def test_what_cannot_be_stored_is_refused_when_saving(tmp_path):
    with pytest.raises(TypeError, match="model/bad: cannot store a set"):
        records.save_checkpoint(tmp_path / "x.pt", {"model": {"bad": {1}}}, {}, kind="test")
    with pytest.raises(ValueError, match="'config' is reserved"):
        records.save_checkpoint(tmp_path / "x.pt", {"config": 1}, {}, kind="test")
    assert not (tmp_path / "x.pt").exists()


@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "model.pt"
    records.save_checkpoint(path, _training_state(), {"lr": 0.5}, kind="molecule model")
    return path


def _refused(path, kind="molecule model", match=""):
    with pytest.raises(InputError) as err:
        records.load_checkpoint(path, kind)
    message = str(err.value)
    assert message.startswith(f"{path}: ") and "\n" not in message, message
    assert match in message, message
    return message


def _header_size(path) -> int:
    return 8 + int.from_bytes(path.read_bytes()[:8], "little")


def test_missing_empty_and_truncated_files_are_refused(saved, tmp_path):
    _refused(tmp_path / "absent.pt", match="no such checkpoint file")
    _refused(tmp_path, match="(a folder)")
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    _refused(empty, match="empty file")
    data, head = saved.read_bytes(), _header_size(saved)
    for cut in (3, 8, 40, head - 1, head, head + 10, len(data) - 1):
        short = tmp_path / f"cut{cut}.pt"
        short.write_bytes(data[:cut])
        _refused(short, match="truncated")
    long = tmp_path / "long.pt"
    long.write_bytes(data + b"\0")
    _refused(long, match="1 bytes too long")


def test_every_flipped_byte_is_refused(saved, tmp_path):
    """Bytes flipped anywhere, in the length prefix, the header (config, skeleton, tensor
    table) or the tensors' data, are caught by a check or by a hash."""
    data, head = saved.read_bytes(), _header_size(saved)
    positions = sorted({*range(0, head, max(1, head // 150)), *range(head, len(data), 97)})
    positions += [data.index(b"lr"), data.index(b"molecule model"), head - 2, len(data) - 1]
    bad = tmp_path / "bad.pt"
    for i in positions:
        flipped = bytearray(data)
        flipped[i] ^= 0xFF
        bad.write_bytes(bytes(flipped))
        _refused(bad)
    flipped = bytearray(data)  # 2,000 bytes of the data flipped, as in the issue
    flipped[head : head + 2000] = bytes(b ^ 0x55 for b in flipped[head : head + 2000])
    bad.write_bytes(bytes(flipped))
    _refused(bad, match="tensors do not match the hash")


def test_a_config_edited_consistently_still_fails_the_header_hash(saved):
    """Editing the config in place (same length, valid JSON) is caught by the header hash."""
    data = saved.read_bytes()
    saved.write_bytes(data.replace(b'\\"lr\\":0.5', b'\\"lr\\":0.6', 1))
    assert saved.read_bytes() != data
    _refused(saved, match="header does not match the hash")


class _Payload:
    """A pickle whose loading runs a shell command (what weights_only=False allows)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_pickle_payloads_are_refused_without_running(tmp_path):
    control = tmp_path / "control"
    torch.save({"model": _Payload(control)}, tmp_path / "control.pt")
    torch.load(tmp_path / "control.pt", weights_only=False)  # the payload is live ...
    assert control.exists()
    marker = tmp_path / "marker"
    zipped, raw = tmp_path / "zipped.pt", tmp_path / "raw.pt"
    torch.save({"model": _Payload(marker), "config": {}}, zipped)  # the old checkpoint format
    raw.write_bytes(pickle.dumps({"model": _Payload(marker)}, protocol=2))
    for path in (zipped, raw):
        _refused(path, match="not a safetensors checkpoint")
        with pytest.raises(InputError):
            records.checkpoint_header(path)
    assert not marker.exists()  # ... and loading it as a checkpoint did not run it


def test_other_files_are_refused(tmp_path):
    from safetensors.torch import save_file

    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.ones(2)}, str(plain))
    _refused(plain, match="not a graftbench checkpoint")
    text = tmp_path / "notes.pt"
    text.write_text("model weights are elsewhere\n")
    _refused(text, match="not a safetensors checkpoint")


def test_the_wrong_kind_is_refused_by_name(tmp_path):
    path = tmp_path / "model.pt"
    records.save_checkpoint(path, {"model": {}}, {"model": {}}, kind="t2i model")
    assert _refused(path) == (
        f"{path}: a t2i model checkpoint, expected a molecule model checkpoint"
    )
    _refused(path, ("unconditional model", "inc corrector"), "expected an unconditional model or")
    from graftbench.tasks.molecule.model import MoleculeAdapter

    with pytest.raises(InputError, match="a t2i model checkpoint, expected a molecule model"):
        MoleculeAdapter.load(path)


# FID: the feature network's checkpoint, its cache key, and the sample-size rule


def _feature_net(path, seed=0, dim=4):
    from graftbench.metrics.feature_net import FEATURES_KIND, FeatureNet

    torch.manual_seed(seed)
    arch = {"in_channels": 1, "image_size": 8, "num_classes": 3, "dim": dim}
    net = FeatureNet(**arch)
    state = {"model": net.state_dict(), "arch": arch, "train_accuracy": 1.0, "device": "cpu"}
    records.save_checkpoint(path, state, {"features": {"dim": dim}}, kind=FEATURES_KIND)
    return path


def _images(folder, n, seed=0):
    from PIL import Image

    folder.mkdir()
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8)).save(folder / f"{i}.png")
    return folder


def test_fid_cache_key_is_the_feature_net_content(tmp_path):
    from graftbench.metrics.fid import load_backend

    a = _feature_net(tmp_path / "a" / "features.pt")
    b = _feature_net(tmp_path / "b" / "features.pt")  # an identical second run
    c = _feature_net(tmp_path / "c" / "features.pt", seed=1)
    keys = [load_backend("trained-cnn", "cpu", str(p)).key for p in (a, b, c)]
    assert keys[0] == keys[1] != keys[2]
    assert a.read_bytes() == b.read_bytes()


def test_fid_refuses_missing_or_wrong_feature_nets(tmp_path):
    from graftbench.evaluate import evaluate_fid

    samples, ref = _images(tmp_path / "s", 6), _images(tmp_path / "r", 6, seed=1)
    with pytest.raises(ConfigError, match="needs --feature-net"):
        evaluate_fid(samples, ref, ["trained-cnn"], "cpu", None)
    model = tmp_path / "model.pt"
    records.save_checkpoint(model, {"model": {}}, {}, kind="unconditional model")
    with pytest.raises(InputError, match="an unconditional model checkpoint, expected a fid"):
        evaluate_fid(samples, ref, ["trained-cnn"], "cpu", str(model))
    corrupt = tmp_path / "features.pt"
    corrupt.write_bytes(_feature_net(tmp_path / "f.pt").read_bytes()[:-10])
    with pytest.raises(InputError, match="truncated"):
        evaluate_fid(samples, ref, ["trained-cnn"], "cpu", str(corrupt))


def test_fid_needs_more_samples_than_feature_dimensions(tmp_path, capsys):
    from graftbench.__main__ import main
    from graftbench.evaluate import evaluate_fid
    from graftbench.metrics.fid import fid

    net = str(_feature_net(tmp_path / "features.pt", dim=4))
    few, ref = _images(tmp_path / "few", 4), _images(tmp_path / "ref", 5, seed=1)
    with pytest.raises(InputError, match=f"{few}: 4 images; .*[(]4-d features[)] needs at least 5"):
        evaluate_fid(few, ref, ["trained-cnn"], "cpu", net)
    out = evaluate_fid(few, ref, ["trained-cnn"], "cpu", net, allow_rank_deficient=True)
    assert out["rank_deficient"] == {"trained-cnn": True} and math.isfinite(
        out["fid"]["trained-cnn"]
    )
    enough = _images(tmp_path / "enough", 5, seed=2)
    out = evaluate_fid(enough, ref, ["trained-cnn"], "cpu", net)
    assert out["feature_dim"] == {"trained-cnn": 4} and "rank_deficient" not in out
    args = ["evaluate", "--samples", str(few), "--reference", str(ref), "--backend", "trained-cnn"]
    assert main([*args, "--feature-net", net, "--out", str(tmp_path / "e.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert "needs at least 5" in err and "\n" not in err
    assert main([*args, "--out", str(tmp_path / "e.json")]) == 2
    assert "needs --feature-net" in capsys.readouterr().err
    rng = np.random.default_rng(0)
    with pytest.raises(
        ValueError, match="4 samples in the first set; 4-d features need at least 5"
    ):
        fid(rng.random((4, 4)), rng.random((9, 4)))
    with pytest.raises(ValueError, match="at least 2"):
        fid(rng.random((1, 4)), rng.random((9, 4)), allow_rank_deficient=True)


def test_fid_matches_the_gaussian_closed_form():
    """For features whose sample means and covariances are exactly m1, m2 and diagonal S1, S2,
    FID = |m1 - m2|^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2)); a set against itself scores 0."""
    from graftbench.metrics.fid import fid

    rng = np.random.default_rng(0)
    dim, n = 3, 400
    z = rng.standard_normal((n, dim))
    z = (z - z.mean(0)) @ np.linalg.inv(np.linalg.cholesky(np.cov(z, rowvar=False))).T
    s1, s2 = np.array([1.0, 2.0, 0.5]), np.array([3.0, 0.5, 0.5])
    m1, m2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    a, b = m1 + z * np.sqrt(s1), m2 + z * np.sqrt(s2)
    expected = np.sum((m1 - m2) ** 2) + np.sum(s1 + s2 - 2 * np.sqrt(s1 * s2))
    assert fid(a, b) == pytest.approx(expected, rel=1e-6)
    assert abs(fid(a, a)) < 1e-6
