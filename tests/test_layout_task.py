"""The layout task: the box-diffusion adapter, the loop's reward, config rules, and every verb
run in-process on a tiny config (CPU, about a minute), checking what each writes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml

from graftbench import records
from graftbench.config import ConfigError, InputError, parse
from graftbench.losses import denoising_loss
from graftbench.tasks.layout import data as layout_data
from graftbench.tasks.layout import files as layout_files
from graftbench.tasks.layout.config import LayoutConfig
from graftbench.tasks.layout.data import PAD
from graftbench.tasks.layout.evaluation import diversity, reward_fn
from graftbench.tasks.layout.model import LayoutAdapter, LayoutModelConfig
from graftbench.tasks.layout.render import legend
from tests.conftest import ROOT


def smoke_config(**over) -> LayoutConfig:
    """The smoke preset of tasks/layout.yaml, with `over` merged in."""
    from graftbench.spec import merge

    spec = yaml.safe_load((ROOT / "tasks/layout.yaml").read_text())["layout"]
    return parse(
        LayoutConfig, merge(merge(spec["base"], spec["profiles"]["smoke"]), over), "layout"
    )


def test_adapter_pads_conditions_and_keeps_shapes():
    torch.manual_seed(0)
    m = LayoutAdapter(LayoutModelConfig(max_elements=5, width=16, layers=1, heads=2))
    cond = m.encode_condition([("title", "text"), ("figure",)])
    assert cond.tolist() == [[1, 0, PAD, PAD, PAD], [4, PAD, PAD, PAD, PAD]]
    x = torch.randn(2, 5, 4)
    assert m.denoise(x, torch.tensor([3, 900]), cond).shape == (2, 5, 4)
    boxes = m.decode(torch.tensor([[[-3.0, -1.0, 0.0, 1.0]]]))
    assert boxes.tolist() == [[[0.0, 0.0, 0.5, 1.0]]]
    with pytest.raises(ValueError, match="6 elements; the model takes 1..5"):
        m.encode_condition([("text",) * 6])


def test_encode_boxes_zeroes_padding_and_inverts_decode():
    boxes = torch.tensor([[[0.25, 0.5, 0.1, 0.2], [0.9, 0.9, 0.9, 0.9]]])
    mask = torch.tensor([[True, False]])
    x = LayoutAdapter.encode_boxes(boxes, mask)
    assert x[0, 1].abs().sum() == 0
    m = LayoutAdapter(LayoutModelConfig(max_elements=2, width=8, layers=1, heads=2))
    assert torch.allclose(m.decode(x)[0, 0], boxes[0, 0])


def test_adapter_save_load_round_trip(tmp_path):
    torch.manual_seed(0)
    m = LayoutAdapter(LayoutModelConfig(max_elements=4, width=16, layers=1, heads=2))
    torch.nn.init.normal_(m.network.out[1].weight)  # zero-initialised: make the output vary
    m.save(tmp_path / "m.pt", {"seed": 3})
    back = LayoutAdapter.load(tmp_path / "m.pt")
    x, t = torch.randn(3, 4, 4), torch.tensor([1, 500, 999])
    c = m.encode_condition([("text",), ("title", "text"), ("list", "table", "figure")])
    assert torch.equal(m.denoise(x, t, c), back.denoise(x, t, c))
    assert records.load_checkpoint(tmp_path / "m.pt")["config"]["seed"] == 3


def test_pretraining_loss_falls_on_generated_layouts():
    """A few hundred steps of the denoising loss on real layouts: the model learns something
    (loss well below its starting value, which is ~1 for an epsilon model predicting 0)."""
    cfg = layout_data.LayoutDataConfig(n_train=256, n_test=8, max_elements=6)
    train, _ = layout_data.make_splits(cfg)
    boxes, classes, mask = layout_data.pad(train, 6)
    x0 = LayoutAdapter.encode_boxes(torch.from_numpy(boxes), torch.from_numpy(mask))
    torch.manual_seed(0)
    m = LayoutAdapter(LayoutModelConfig(max_elements=6, width=32, layers=2, heads=2))
    opt = torch.optim.AdamW(m.network.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(150):
        idx = torch.randint(len(x0), (64,), generator=g)
        loss = denoising_loss(m, x0[idx], torch.from_numpy(classes)[idx], g)
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    assert np.mean(losses[:5]) > 0.9 and np.mean(losses[-20:]) < 0.5 * np.mean(losses[:5])


def test_reward_masks_elements_past_each_condition():
    from graftbench.tasks.layout.metrics import RewardConfig

    r = reward_fn(RewardConfig(alignment_weight=10.0, overlap_weight=1.0))
    aligned = torch.tensor([[0.3, 0.2, 0.2, 0.1], [0.3, 0.5, 0.2, 0.1]])  # left-aligned, apart
    junk = torch.tensor([[0.31, 0.21, 0.2, 0.1]])  # overlaps the first box
    boxes = torch.cat([aligned, junk])[None].expand(2, -1, -1)
    out = r(boxes, [("text", "text"), ("text", "text", "text")])
    assert out[0] == pytest.approx(1.0) and out[1] < 0.7


def test_diversity_closed_form():
    boxes = np.zeros((4, 3, 4))
    boxes[1, :2] = 0.1  # condition 0: two samples 0.1 apart in every coordinate of 2 elements
    boxes[1, 2] = 5.0  # ignored: past the condition's length
    assert diversity(boxes, [("text", "text")] * 2 + [("text",)] * 2, 2) == pytest.approx(0.05)
    assert np.isnan(diversity(boxes, [("text",)] * 4, 1))


@pytest.mark.parametrize(
    ("over", "message"),
    [
        (
            {"model": {"max_elements": 12}},
            "layout.model.max_elements: 12 must equal layout.data.max_elements",
        ),
        ({"source": "coco"}, "layout.coco.train and layout.coco.test: source 'coco' needs both"),
        (
            {"ddpo": {"loop": {"reward_budget": 128}}},
            r"layout.ddpo.loop.reward_budget: 128 differs",
        ),
        ({"pgraft": {"loop": {"num_steps": 8}}}, "layout.pgraft.loop.num_steps: 8 differs from"),
        (
            {"finetune_conditions": 0},
            "layout.finetune_conditions: 0 is out of range; allowed: >= 1",
        ),
        (
            {"evaluate": {"curve_conditions": 0}},
            "layout.evaluate.curve_conditions: 0 is out of range",
        ),
        ({"methods": ["graft"]}, "layout.methods: must include 'base'"),
        ({"data": {"n_train": 0}}, "layout.data.n_train: 0 is out of range; allowed: >= 1"),
    ],
)
def test_config_rules_name_the_key(over, message):
    with pytest.raises(ConfigError, match=message):
        smoke_config(**over)


def test_coco_source_names_the_missing_file(tmp_path):
    from graftbench.tasks.layout.splits import prepare_data

    cfg = smoke_config(
        source="coco",
        coco={"train": str(tmp_path / "train.json"), "test": str(tmp_path / "val.json")},
    )
    with pytest.raises(InputError, match=r"layout.coco.train: .*train.json does not exist"):
        prepare_data(cfg, tmp_path / "data")


def test_runs_in_table_order():
    assert smoke_config().runs() == [
        "base",
        "graft",
        "graft_threshold",
        "self_fit",
        "pgraft2",
        "ddpo",
        "best_of_m",
    ]


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """prepare_data -> train_features -> pretrain -> evaluate_base -> finetune (every run) ->
    aggregate on the smoke preset, in-process."""
    from graftbench import tasks
    from graftbench.finetuning import runner
    from graftbench.finetuning.task import RunInputs
    from graftbench.tasks.layout.splits import prepare_data
    from graftbench.tasks.layout.table import aggregate
    from graftbench.tasks.layout.task import pretrain, train_features

    root = tmp_path_factory.mktemp("layout")
    cfg = smoke_config()
    prepare_data(cfg, root / "data")
    train_features(cfg, root / "data", root / "features.pt")
    pretrain(cfg, root / "data", root / "model.pt")
    task = tasks.get("layout").finetune
    inputs = RunInputs(data=root / "data", features=root / "features.pt")
    out = {
        "base": runner.evaluate_base(
            task, cfg, root / "model.pt", 0, root / "base/seed0", inputs=inputs
        )
    }
    for run in cfg.runs()[1:]:
        out[run] = runner.finetune(
            task,
            cfg,
            root / "model.pt",
            run,
            0,
            root / "base/seed0",
            root / run / "seed0",
            inputs=inputs,
        )
    figures = [root / f"fig{i}.png" for i in range(3)]
    aggregate(root, root / "tables/layout.csv", figures, "smoke")
    return root, cfg, out


def test_verbs_write_finished_runs(pipeline):
    root, cfg, out = pipeline
    summary = records.read_json(root / "data/summary.json")
    assert summary["n_train"] == cfg.data.n_train and summary["real_test"]["overlap"] == 0
    assert np.isfinite(records.read_json(root / "features.json")["fid_train_vs_test"])
    budget = cfg.graft.loop.reward_budget
    for run, m in out.items():
        assert 0 < m["heldout_reward"] <= 1 and 0 <= m["max_iou"] <= 1 and m["fid"] >= 0
        samples = layout_files.read_json(root / run / "seed0/samples.json")
        held = layout_files.read_json(root / "data/test.json")[: cfg.evaluate.heldout_conditions]
        assert [layout_data.condition(s) for s in samples] == [
            layout_data.condition(h) for h in held
        ]
        if run == "best_of_m":  # no fine-tuning: the base's best of m, at m times its FLOPs
            m_draws = cfg.best_of_m.m
            assert m["reward_queries"] == 0 and m["inference_reward_queries"] == m_draws
            assert m["inference_flops"] == m_draws * out["base"]["inference_flops"] > 0
            assert not (root / run / "seed0/model.pt").exists()
            continue
        if run == "base":
            assert m["reward_queries"] == 0 and m["drift"] == 0
            continue
        assert m["reward_queries"] == budget and m["train_flops"] > 0
        rounds = records.read_jsonl(root / run / "seed0/rounds.jsonl")
        assert rounds[-1]["reward_queries"] == budget and "curve_reward" in rounds[-1]
    # every run samples the same noise: the fine-tuned runs moved away from the base's boxes
    assert all(out[r]["drift"] > 0 for r in cfg.runs()[1:])
    assert out["pgraft2"]["intermediate_step"] == 2


def test_aggregate_writes_table_and_figures(pipeline):
    import pandas as pd

    root, cfg, _ = pipeline
    table = pd.read_csv(root / "tables/layout.csv")
    assert list(table["run"]) == cfg.runs()
    assert table.loc[table["run"] == "base", "improvement_pct_mean"].item() == 0
    md = (root / "tables/layout.md").read_text()
    assert "real test layouts: reward 1.000" in md and "LayoutGAN++" in md
    for i in range(3):
        assert (root / f"fig{i}.png").stat().st_size > 1000
    assert set(legend()) == set(layout_data.CLASSES)


def test_finetune_refuses_base_boxes_of_another_shape(pipeline, tmp_path):
    from graftbench.finetuning import runner
    from graftbench.finetuning.task import RunInputs
    from graftbench.tasks.layout.task import LayoutFinetune

    root, cfg, _ = pipeline
    np.savez(tmp_path / "boxes.npz", boxes=np.zeros((3, 10, 4)))
    with pytest.raises(InputError, match="base boxes .* do not match"):
        runner.finetune(
            LayoutFinetune(),
            cfg,
            root / "model.pt",
            "graft",
            0,
            tmp_path,
            tmp_path / "run",
            inputs=RunInputs(data=root / "data", features=root / "features.pt"),
        )


def test_verb_cli_names_missing_layout_inputs(tmp_path, capsys):
    from graftbench.__main__ import main

    cfg = json.dumps({"data": {"n_train": 10}})
    args = ["--config", cfg, "--model", "m.pt", "--seed", "0", "--out", str(tmp_path)]
    assert main(["evaluate-model", "--task", "layout", *args]) == 2
    err = capsys.readouterr().err
    assert "--data: the layout task's evaluate-model reads prepare-data's folder" in err
    assert main(["evaluate-model", "--task", "layout", *args, "--data", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "--features: the layout task's evaluate-model reads train-features' network" in err
