"""The molecule task: config rules, user SMILES files, de-duplication by molecule, and every
verb run in-process on the smoke preset (a 300-molecule QM9 subset), checking what each
writes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml

from graftbench import records
from graftbench.config import ConfigError, InputError, parse, to_dict
from graftbench.methods.rollout import Rollout
from graftbench.tasks.molecule.config import MoleculeConfig
from tests.conftest import ROOT


def smoke_config(**over) -> MoleculeConfig:
    """The smoke preset of tasks/molecule.yaml on 300 training molecules, pre-trained long
    enough to draw some valid ones (so rewards, advantages and selection are not all 0),
    `over` merged in."""
    from graftbench.spec import merge

    spec = yaml.safe_load((ROOT / "tasks/molecule.yaml").read_text())["molecule"]
    small = {
        "data": {"max_train": 300, "n_test": 100},
        "pretrain": {"steps": 400, "lr": 0.003, "checkpoint_every": 200},
    }
    cfg = merge(merge(merge(spec["base"], spec["profiles"]["smoke"]), small), over)
    return parse(MoleculeConfig, cfg, "molecule")


@pytest.mark.parametrize(
    ("over", "message"),
    [
        (
            {"graft_dedup": {"selection": {"dedup": False}}},
            "molecule.graft_dedup.selection.dedup: must be true",
        ),
        (
            {"ddpo": {"loop": {"reward_budget": 128}}},
            r"molecule.ddpo.loop.reward_budget: 128 differs",
        ),
        ({"pgraft": {"loop": {"num_steps": 6}}}, "molecule.pgraft.loop.num_steps: 6 differs from"),
        ({"methods": ["graft"]}, "molecule.methods: must include 'base'"),
        ({"data": {"source": "file"}}, "molecule.data.file: source 'file' needs a SMILES file"),
        (
            {"evaluate": {"samples": 0}},
            "molecule.evaluate.samples: 0 is out of range; allowed: >= 1",
        ),
        ({"model": {"heads": 3}}, "molecule.model.heads: 3 must divide width 32"),
        ({"reward": "logp"}, "reward"),
    ],
)
def test_config_rules_name_the_key(over, message):
    with pytest.raises(ConfigError, match=message):
        smoke_config(**over)


def test_runs_in_table_order():
    assert smoke_config().runs() == [
        "base",
        "graft",
        "graft_dedup",
        "self_fit",
        "pgraft4",
        "ddpo",
        "best_of_m",
    ]


def test_a_user_smiles_file_names_its_bad_line(tmp_path, capsys):
    from graftbench.__main__ import main
    from graftbench.tasks.molecule.splits import prepare_data

    smi = tmp_path / "mine.smi"
    smi.write_text("# my molecules\nCCO ethanol\n\nc1ccccc1\nC1CC broken\n")
    cfg = smoke_config(data={"source": "file", "file": str(smi), "n_test": 1})
    with pytest.raises(InputError, match=r"mine.smi line 5: 'C1CC' is not a valid SMILES"):
        prepare_data(cfg, tmp_path / "data")
    config = json.dumps({"data": {"source": "file", "file": str(tmp_path / "none.smi")}})
    assert (
        main(
            ["prepare-data", "--task", "molecule", "--config", config, "--out", str(tmp_path / "d")]
        )
        == 2
    )
    assert "none.smi does not exist" in capsys.readouterr().err
    smi.write_text("CCO\nc1ccccc1\nCC(=O)O\nOCC\nCCN\n")  # OCC is ethanol again: dropped
    summary = prepare_data(
        smoke_config(
            data={"source": "file", "file": str(smi), "n_test": 2}, evaluate={"fcd": False}
        ),
        tmp_path / "data",
    )
    assert (summary["n_source"], summary["n_train"], summary["n_test"]) == (4, 2, 2)


def test_graft_dedup_accepts_one_copy_of_a_molecule_however_it_is_written():
    """A group of M = 4 whose best two samples are ethanol written two ways: with dedup by
    canonical SMILES, top-2 takes ethanol once and the next best molecule."""
    from graftbench.finetuning.build import build_method
    from graftbench.tasks.molecule.data import canonical
    from graftbench.tasks.molecule.model import MoleculeAdapter
    from graftbench.tasks.molecule.tokens import Vocabulary

    cfg = smoke_config(graft={"selection": {"k": 2}}, graft_dedup={"selection": {"k": 2}})
    model = MoleculeAdapter(cfg.model, Vocabulary.from_smiles(["CCO", "c1ccccc1"], "selfies"))
    rollout = Rollout(
        ["molecule"] * 4,
        torch.zeros(4, 24, dtype=torch.long),
        None,
        8,
        decoded=["CCO", "OCC", "c1ccccc1", "CC"],
    )
    rewards = torch.tensor([[0.9, 0.8, 0.5, 0.1]])
    g = torch.Generator().manual_seed(0)
    dedup = build_method(
        cfg, "molecule", "graft_dedup", model, 0, dedup_key=lambda s: canonical(s) or s
    )
    assert dedup.accept(rollout, rewards, g).tolist() == [0, 2]
    plain = build_method(cfg, "molecule", "graft", model, 0)
    assert plain.accept(rollout, rewards, g).tolist() == [0, 1]


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """prepare_data -> pretrain -> evaluate_base -> finetune (every run) -> aggregate on the
    smoke preset, in-process."""
    from graftbench import tasks
    from graftbench.finetuning import runner
    from graftbench.finetuning.task import RunInputs
    from graftbench.tasks.molecule.splits import prepare_data
    from graftbench.tasks.molecule.table import aggregate
    from graftbench.tasks.molecule.task import pretrain

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("molecule")
    cfg = smoke_config()
    prepare_data(cfg, root / "data")
    records.write_json(root / "config.json", to_dict(cfg))
    pretrain(cfg, root / "data", root / "model.pt")
    task, inputs = tasks.get("molecule").finetune, RunInputs(data=root / "data")
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
    aggregate(root, root / "tables/molecule.csv", figures, "smoke")
    return root, cfg, out


def test_verbs_write_finished_runs(pipeline):
    from graftbench.tasks.molecule.data import read_scored_smiles

    root, cfg, out = pipeline
    summary = records.read_json(root / "data/summary.json")
    assert (summary["n_train"], summary["n_test"]) == (300, 100)
    assert summary["real_test"]["validity"] == 1 and summary["real_test"]["novelty"] == 1
    budget = cfg.graft.loop.reward_budget
    for run, m in out.items():
        smiles, scores = read_scored_smiles(root / run / "seed0/samples.tsv")
        assert len(smiles) == m["n"] == cfg.evaluate.samples
        assert list(scores) == [cfg.reward] and all(0 <= v <= 1 for v in scores[cfg.reward])
        assert 0 <= m["validity"] <= 1 and m["n_invalid"] == round((1 - m["validity"]) * m["n"])
        assert (root / run / "seed0/grid.png").stat().st_size > 0
        assert not (root / run / "seed0/loop.partial").exists()
        if run == "best_of_m":  # no fine-tuning: the base's best of m, at m times its FLOPs
            m_draws = cfg.best_of_m.m
            assert m["reward_queries"] == 0 and m["inference_reward_queries"] == m_draws
            assert m["inference_flops"] == m_draws * out["base"]["inference_flops"] > 0
            assert not (root / run / "seed0/model.pt").exists()
            continue
        if run == "base":
            assert m["reward_queries"] == 0 and m["drift"] == 0 and m["validity"] > 0
            continue
        assert m["reward_queries"] == budget and m["train_flops"] > 0
        rounds = records.read_jsonl(root / run / "seed0/rounds.jsonl")
        assert rounds[-1]["reward_queries"] == budget and "curve_reward" in rounds[-1]
        assert 0 < m["drift"] <= 1  # the same random numbers, other weights: other tokens
    # the masked sampler's own log-probs, recomputed by DDPO before any update: ratio 1
    ddpo = records.read_jsonl(root / "ddpo/seed0/rounds.jsonl")
    assert max(r["ratio_first_dev"] for r in ddpo) < 1e-5
    assert out["pgraft4"]["intermediate_step"] == 4


def test_aggregate_writes_table_and_figures(pipeline):
    import pandas as pd

    root, cfg, _ = pipeline
    table = pd.read_csv(root / "tables/molecule.csv")
    assert list(table["run"]) == cfg.runs()
    md = (root / "tables/molecule.md").read_text()
    assert "real test molecules: reward" in md and "MOSES" in md
    for i in range(3):
        assert (root / f"fig{i}.png").stat().st_size > 1000


def test_finetune_refuses_base_tokens_of_another_shape(pipeline, tmp_path):
    from graftbench.finetuning import runner
    from graftbench.finetuning.task import RunInputs
    from graftbench.tasks.molecule.task import MoleculeFinetune

    root, cfg, _ = pipeline
    np.savez(tmp_path / "tokens.npz", tokens=np.zeros((3, 24), np.int64))
    with pytest.raises(InputError, match="base tokens .* do not match"):
        runner.finetune(
            MoleculeFinetune(),
            cfg,
            root / "model.pt",
            "graft",
            0,
            tmp_path,
            tmp_path / "run",
            inputs=RunInputs(data=root / "data"),
        )


def test_a_reward_that_raises_fails_the_run_and_leaves_no_result(pipeline, tmp_path, monkeypatch):
    from graftbench.finetuning import runner
    from graftbench.finetuning.task import RunInputs
    from graftbench.tasks.molecule import evaluation
    from graftbench.tasks.molecule.task import MoleculeFinetune

    root, cfg, _ = pipeline

    def broken(cfg):
        def reward(smiles, conditions):
            raise RuntimeError("scorer crashed")

        return reward

    monkeypatch.setattr(evaluation, "reward_fn", broken)
    with pytest.raises(RuntimeError, match="scorer crashed"):
        runner.finetune(
            MoleculeFinetune(),
            cfg,
            root / "model.pt",
            "graft",
            0,
            root / "base/seed0",
            tmp_path / "run",
            inputs=RunInputs(data=root / "data"),
        )
    assert not (tmp_path / "run/metrics.json").exists()
    assert not (tmp_path / "run/eval.json").exists()


def test_verb_cli_names_missing_molecule_data(tmp_path, capsys):
    from graftbench.__main__ import main

    code = main(
        [
            "evaluate-model",
            "--task",
            "molecule",
            "--config",
            "{}",
            "--model",
            "m.pt",
            "--seed",
            "0",
            "--out",
            str(tmp_path),
        ]
    )
    assert code == 2
    assert "--data: the molecule task" in capsys.readouterr().err
    code = main(
        [
            "finetune",
            "--task",
            "unconditional",
            "--config",
            "{}",
            "--model",
            "m.pt",
            "--run",
            "graft",
            "--seed",
            "0",
            "--base",
            "b",
            "--out",
            str(tmp_path),
        ]
    )
    assert code == 2
    assert "(finetune takes --task t2i, layout, molecule, toy2d)" in capsys.readouterr().err
