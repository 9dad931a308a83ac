"""Each verb run on CPU without Snakemake, checking what it writes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from graftbench import records
from graftbench.__main__ import main
from graftbench.config import InputError
from graftbench.tasks.unconditional.data import DataConfig, load_images


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """prepare-data -> train-features -> pretrain -> sample, shared by the tests below."""
    from tests.conftest import tiny_unconditional

    cfg = tiny_unconditional()
    root = tmp_path_factory.mktemp("verbs")
    c = json.dumps(cfg)
    data = root / "data"
    assert main(["prepare-data", "--task", "unconditional", "--config", c, "--out", str(data)]) == 0
    assert (
        main(
            [
                "train-features",
                "--task",
                "unconditional",
                "--config",
                c,
                "--data",
                str(data),
                "--out",
                str(root / "features.pt"),
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "pretrain",
                "--task",
                "unconditional",
                "--config",
                c,
                "--data",
                str(data),
                "--out",
                str(root / "model.pt"),
                "--log",
                str(root / "curve.jsonl"),
            ]
        )
        == 0
    )
    run = root / "run"
    assert (
        main(
            [
                "sample",
                "--task",
                "unconditional",
                "--config",
                c,
                "--model",
                str(root / "model.pt"),
                "--steps",
                "3",
                "--seed",
                "0",
                "--out",
                str(run),
            ]
        )
        == 0
    )
    return root, cfg


def test_prepare_data_writes_disjoint_split(pipeline):
    root, cfg = pipeline
    train = np.load(root / "data/train.npz")
    test = sorted((root / "data/test").glob("*.png"))
    assert (
        len(test) == cfg["data"]["n_test"] == len(list((root / "data/train_subset").glob("*.png")))
    )
    assert len(train["images"]) == 5000 - cfg["data"]["n_test"]
    assert train["images"].shape[1:] == (16, 16, 1) and train["images"].dtype == np.uint8
    assert np.asarray(Image.open(test[0])).shape == (16, 16)
    # stratified: every class is in the test split
    assert set(np.unique(train["labels"])) == set(range(10))


def test_pretrain_checkpoint_embeds_config_and_curve(pipeline):
    root, cfg = pipeline
    ckpt = records.load_checkpoint(root / "model.pt")
    assert ckpt["config"] == cfg and ckpt["steps"] == 6
    assert "torch" in ckpt["versions"]
    assert not (root / "model.pt.partial").exists()  # removed once the run finished
    lines = [json.loads(line) for line in (root / "curve.jsonl").read_text().splitlines()]
    assert lines[-1]["step"] == 6 and np.isfinite(lines[-1]["loss"])


def test_sample_writes_run_record(pipeline):
    root, cfg = pipeline
    run = root / "run"
    metrics = records.read_json(run / "metrics.json")
    pngs = sorted((run / "samples").glob("*.png"))
    assert len(pngs) == metrics["n_samples"] == 40
    assert len((run / "conditions.jsonl").read_text().splitlines()) == 40
    assert metrics["nfe"] == 3 and metrics["flops_per_image"] == 3 * metrics["flops_per_nfe"] > 0
    assert records.read_json(run / "config.json") == cfg
    assert (run / "grid.png").exists() and not (run / "samples.partial").exists()
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert sum(r["images"] for r in log) == 40


def test_sample_is_deterministic(pipeline, tmp_path):
    root, cfg = pipeline
    args = [
        "sample",
        "--task",
        "unconditional",
        "--config",
        json.dumps(cfg),
        "--model",
        str(root / "model.pt"),
        "--steps",
        "3",
        "--seed",
        "0",
        "--out",
        str(tmp_path),
    ]
    assert main(args) == 0
    a = [np.asarray(Image.open(p)) for p in sorted((root / "run/samples").glob("*.png"))]
    b = [np.asarray(Image.open(p)) for p in sorted((tmp_path / "samples").glob("*.png"))]
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def test_evaluate_scores_any_folder(pipeline, tmp_path):
    root, _ = pipeline
    out = tmp_path / "eval.json"
    args = [
        "evaluate",
        "--samples",
        str(root / "run/samples"),
        "--reference",
        str(root / "data/test"),
        "--backend",
        "trained-cnn",
        "--feature-net",
        str(root / "features.pt"),
        "--out",
        str(out),
    ]
    assert main(args) == 0
    fid_model = records.read_json(out)["fid"]["trained-cnn"]
    # the real-data floor: a train subset against the test set scores far better than a
    # 6-step model does
    args[2] = str(root / "data/train_subset")
    assert main(args) == 0
    fid_real = records.read_json(out)["fid"]["trained-cnn"]
    assert 0 <= fid_real < fid_model


def test_evaluate_rejects_empty_folder_and_bad_conditions(pipeline, tmp_path, capsys):
    root, _ = pipeline
    empty = tmp_path / "samples"
    empty.mkdir()
    args = [
        "evaluate",
        "--samples",
        str(empty),
        "--reference",
        str(root / "data/test"),
        "--backend",
        "trained-cnn",
        "--feature-net",
        str(root / "features.pt"),
        "--out",
        str(tmp_path / "e.json"),
    ]
    assert main(args) == 2
    assert "no images" in capsys.readouterr().err
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(empty / "0.png")
    (tmp_path / "conditions.jsonl").write_text('{"index": 0}\nnot json\n')
    assert main(args) == 2
    assert "conditions.jsonl:2" in capsys.readouterr().err
    assert not (tmp_path / "e.json").exists()
    (tmp_path / "conditions.jsonl").write_text("3\n")
    assert main(args) == 2
    assert "conditions.jsonl:1: not a JSON object (got '3')" in capsys.readouterr().err
    (tmp_path / "conditions.jsonl").unlink()
    Image.fromarray(np.zeros((20, 16), np.uint8)).save(empty / "1.png")
    assert main(args) == 2
    assert "1.png: 16x20, but 0.png is 16x16" in capsys.readouterr().err
    (empty / "1.png").write_bytes(b"not a png")
    assert main(args) == 2
    assert "1.png: not a readable image" in capsys.readouterr().err


def test_a_dataset_folder_names_the_file_it_cannot_use(tmp_path):
    cfg = DataConfig(dataset="folder", root=str(tmp_path), image_size=16)
    with pytest.raises(FileNotFoundError, match="data.root: no images found"):
        load_images(cfg)
    Image.fromarray(np.zeros((24, 20, 3), np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(np.zeros((12, 30, 3), np.uint8)).save(tmp_path / "b.jpg")
    with pytest.raises(InputError, match=r"b.jpg: 30x12 is smaller than data.image_size 16"):
        load_images(cfg)
    (tmp_path / "b.jpg").write_bytes(b"\xff\xd8 truncated")
    with pytest.raises(InputError, match="b.jpg: not a readable image"):
        load_images(cfg)
    (tmp_path / "b.jpg").unlink()
    images, labels = load_images(cfg)
    assert images.shape == (1, 16, 16, 1) and labels is None


def test_aggregate_writes_table_and_figure(pipeline, tmp_path):
    root, cfg = pipeline
    task = tmp_path / "unconditional"
    for seed in (0, 1):
        run = task / "base_euler3" / f"seed{seed}"
        run.mkdir(parents=True)
        m = records.read_json(root / "run/metrics.json") | {"seed": seed}
        records.write_json(run / "metrics.json", m)
        records.write_json(
            run / "eval.json",
            {"fid": {"trained-cnn": 10.0 + seed}, "n_samples": 40, "n_reference": 40},
        )
    records.write_json(task / "real_data_eval.json", {"fid": {"trained-cnn": 1.0}})
    table, fig = tmp_path / "tables/unconditional.csv", tmp_path / "figures/u.png"
    assert (
        main(
            [
                "aggregate",
                "--task",
                "unconditional",
                "--results",
                str(task),
                "--table",
                str(table),
                "--figure",
                str(fig),
                "--profile",
                "smoke",
            ]
        )
        == 0
    )
    import pandas as pd

    df = pd.read_csv(table)
    assert df.loc[0, "fid.trained-cnn_mean"] == pytest.approx(10.5)
    # two seeds 10 and 11: t(0.975, 1) * sd / sqrt(2) = 12.706 * 0.7071 / 1.4142
    assert df.loc[0, "fid.trained-cnn_ci95"] == pytest.approx(12.7062 * 0.5, rel=1e-4)
    assert df.loc[0, "seeds"] == "0 1" and df.loc[0, "n_seeds"] == 2
    md = table.with_suffix(".md").read_text()
    assert "trained-cnn" in md and "real-data floor" in md and "versions" in md
    assert fig.stat().st_size > 1000


def test_inception_backend_loads_offline_and_scores(tmp_path):
    """The standard Inception-v3 back-end, from the installed wheel: 2048-d features, and two
    different folders score apart. (FID of a set against itself is ~0 is checked on the small
    trained-cnn features: each 2048-d matrix square root costs about a minute on 2 cores.)"""
    from graftbench.metrics import fid as fidlib

    rng = np.random.default_rng(0)
    a, b = tmp_path / "a", tmp_path / "b"
    for folder, shift in ((a, 0), (b, 120)):
        folder.mkdir()
        for i in range(6):
            img = (rng.random((16, 16, 3)) * 100 + shift).astype(np.uint8)
            Image.fromarray(img).save(folder / f"{i}.png")
    backend = fidlib.load_backend("inception", "cpu")
    fa = fidlib.folder_features(a, backend, "cpu")
    fb = fidlib.folder_features(b, backend, "cpu")
    assert fa.shape == (6, 2048) and backend.dim == 2048
    # 6 samples of 2048-d features: a rank-deficient estimate, asked for explicitly
    with pytest.raises(ValueError, match="need at least 2049"):
        fidlib.fid(fa, fb)
    assert fidlib.fid(fa, fb, allow_rank_deficient=True) > 1.0
