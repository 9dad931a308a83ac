"""The text-to-image task: its config rules, evaluation metrics and run naming, and the verbs
on a tiny model (the whole branch runs in the smoke workflow test)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from graftbench.__main__ import main
from graftbench.config import ConfigError, parse, to_dict
from graftbench.spec import resolve
from graftbench.tasks.t2i.config import T2IConfig
from graftbench.tasks.t2i.evaluation import diversity, paired_change
from graftbench.tasks.t2i.judge import VerifierJudge
from graftbench.tasks.t2i.prompts import eval_prompts, finetune_prompts
from graftbench.tasks.t2i.render import render
from graftbench.tasks.t2i.scenes import sample_scene
from graftbench.tasks.t2i.verifier import VerifierConfig
from tests.conftest import workflow_config


def smoke() -> dict:
    return to_dict(resolve(workflow_config("smoke"), "t2i"))


def with_change(change) -> dict:
    cfg = smoke()
    change(cfg)
    return cfg


@pytest.mark.parametrize(
    "change, message",
    [
        (
            lambda c: c["ddpo"]["loop"].update(reward_budget=64),
            r"t2i.ddpo.loop.reward_budget: 64 differs from t2i.graft.loop.reward_budget \(32\)",
        ),
        (
            lambda c: c["evaluate"].update(num_steps=6),
            r"t2i.pgraft.loop.num_steps: 4 must equal t2i.evaluate.num_steps \(6\)",
        ),
        (lambda c: c.update(methods=["graft"]), r"t2i.methods: must include 'base'"),
        (
            lambda c: c["pgraft"].update(intermediate_steps=[2, 4]),
            r"pgraft.intermediate_steps: 4 must lie in 1..pgraft.loop.num_steps - 1 = 3",
        ),
        (lambda c: c.update(methods=["base", "rlhf"]), r"t2i.methods\[1\]: 'rlhf'"),
        (lambda c: c["evaluate"].update(curve_every=0), r"t2i.evaluate.curve_every: 0"),
        (
            lambda c: c["evaluate"].update(train_samples_per_prompt=0),
            r"t2i.evaluate.train_samples_per_prompt: 0 is out of range; allowed: >= 1",
        ),
        (
            lambda c: c.update(finetune_prompts=-1),
            r"t2i.finetune_prompts: -1 is out of range; allowed: >= 0",
        ),
        (lambda c: c["ddpo"].update(log_prob="max"), r"t2i.ddpo.log_prob: 'max'"),
        (
            lambda c: c["evaluate"].update(n_train_prompts=32),
            r"t2i.evaluate.n_train_prompts: no longer a key; use t2i.finetune_prompts",
        ),
    ],
)
def test_config_rules_name_the_key(change, message):
    with pytest.raises(ConfigError, match=message):
        parse(T2IConfig, with_change(change), "t2i")


def test_unequal_budgets_are_allowed_when_the_method_is_off():
    cfg = with_change(
        lambda c: (
            c["ddpo"]["loop"].update(reward_budget=64),
            c.update(methods=["base", "graft", "pgraft"]),
        )
    )
    assert parse(T2IConfig, cfg, "t2i").runs() == ["base", "graft", "pgraft2"]


def test_runs_in_table_order():
    cfg = with_change(
        lambda c: (
            c.update(methods=["ddpo", "base", "pgraft"]),
            c["pgraft"].update(intermediate_steps=[3, 1]),
        )
    )
    assert parse(T2IConfig, cfg, "t2i").runs() == ["ddpo", "base", "pgraft3", "pgraft1"]


def test_diversity_is_the_mean_pixel_rms_between_a_prompts_images():
    a = np.zeros((2, 4, 4, 3), np.uint8)  # prompt 1: two identical images -> 0
    b = np.stack([np.zeros((4, 4, 3)), np.full((4, 4, 3), 51)]).astype(np.uint8)  # RMS 0.2
    assert diversity(np.concatenate([a, b]), 2) == pytest.approx(0.1)
    three = np.stack([np.full((4, 4, 3), v) for v in (0, 51, 102)]).astype(np.uint8)
    assert diversity(three, 3) == pytest.approx((0.2 + 0.4 + 0.2) / 3)
    assert np.isnan(diversity(three, 1))


def test_score_is_per_category_and_perfect_on_clean_renders():
    cfg = parse(T2IConfig, smoke(), "t2i")
    prompts = eval_prompts(cfg)["heldout"]
    rng = np.random.default_rng(0)
    images = np.stack([render(sample_scene(p, rng), 32) for p in prompts])
    s, each = VerifierJudge(VerifierConfig()).score(images, prompts, "heldout")
    assert s["heldout_reward"] == 1.0 and s["heldout_accuracy"] == 1.0
    assert each.shape == (len(prompts),) and (each == 1.0).all()
    cats = {p.category for p in prompts}
    assert {k for k in s if "_acc_" in k} == {f"heldout_acc_{c}" for c in cats}
    blank, each = VerifierJudge(VerifierConfig()).score(np.zeros_like(images), prompts, "x")
    assert blank["x_reward"] == 0.0 and all(blank[f"x_acc_{c}"] == 0.0 for c in cats)
    assert (each == 0.0).all()


def test_paired_change_is_the_mean_difference_over_the_training_images():
    # held-out scores first (ignored), then 4 training images: differences 0.5, 0, 0, -0.1
    base = np.array([9.0, 9.0, 0.5, 0.5, 1.0, 0.6])
    run = np.array([0.0, 0.0, 1.0, 0.5, 1.0, 0.5])
    d = np.array([0.5, 0.0, 0.0, -0.1])
    got = paired_change(run, base, 4)
    assert got["train_change"] == pytest.approx(0.1)
    assert got["train_change_ci"] == pytest.approx(1.96 * d.std(ddof=1) / 2)
    assert np.isnan(paired_change(run, base, 1)["train_change_ci"])


def test_evaluation_prompts_are_fixed_and_held_out_apart_from_training():
    cfg = parse(T2IConfig, smoke(), "t2i")
    sets, again = eval_prompts(cfg), eval_prompts(copy.deepcopy(cfg))
    assert sets == again
    assert not {p.text for p in sets["heldout"]} & {p.text for p in sets["train"]}
    assert {p.text for p in sets["curve"]} <= {p.text for p in sets["heldout"]}
    assert sets["train"] == finetune_prompts(cfg) and len(sets["train"]) == cfg.finetune_prompts
    assert len(sets["curve"]) == min(cfg.evaluate.curve_prompts, len(sets["heldout"]))


def test_verbs_pretrain_evaluate_finetune_on_a_tiny_model(tmp_path, capsys):
    """The three t2i verbs chained as the workflow chains them; the fine-tuned model moved
    from the base, the reward budget was spent exactly, and the records say what ran."""
    from graftbench import records

    torch.set_num_threads(1)
    cfg = smoke()
    cfg["pretrain"].update(steps=4, checkpoint_every=2, warmup=1)
    cfg["scenes"].update(n_train_per_category=2, n_heldout_per_category=2)
    cfg["evaluate"].update(curve_prompts=2, train_samples_per_prompt=3)
    cfg["finetune_prompts"] = 2
    (tmp_path / "cfg.json").write_text(__import__("json").dumps(cfg))
    common = ["--task", "t2i", "--config", str(tmp_path / "cfg.json")]
    model = str(tmp_path / "model.pt")
    assert main(["pretrain", *common, "--out", model]) == 0
    assert (
        main(
            [
                "evaluate-model",
                *common,
                "--model",
                model,
                "--seed",
                "0",
                "--out",
                str(tmp_path / "base"),
            ]
        )
        == 0
    )
    base_images = str(tmp_path / "base/images.npz")
    base_run = str(tmp_path / "base")
    assert (
        main(
            [
                "finetune",
                *common,
                "--model",
                model,
                "--run",
                "pgraft2",
                "--seed",
                "0",
                "--base",
                base_run,
                "--out",
                str(tmp_path / "pg"),
            ]
        )
        == 0
    )
    m = records.read_json(tmp_path / "pg/metrics.json")
    ev = records.read_json(tmp_path / "pg/eval.json")
    rounds = records.read_jsonl(tmp_path / "pg/rounds.jsonl")
    assert m["reward_queries"] == cfg["pgraft"]["loop"]["reward_budget"] == 32
    assert [r["reward_queries"] for r in rounds] == [16, 32]
    assert all("curve_reward" in r for r in rounds)  # curve_every = 1
    assert m["intermediate_step"] == 2 and 0 < m["t_intermediate"] < 999
    assert m["sampler_nfe"] == 32 * cfg["pgraft"]["loop"]["num_steps"]
    assert ev["drift"] > 0 and "torch" in m["versions"]
    assert "pgraft2 seed 0: held-out reward" in capsys.readouterr().err
    # the training reward's change is paired image by image with the base's: 2 prompts x 3
    base, run = np.load(base_images), np.load(tmp_path / "pg/images.npz")
    assert len(run["scores"]) == len(run["images"]) == len(base["scores"])
    n_held = ev["n_heldout_prompts"] * ev["samples_per_prompt"]
    assert len(run["images"]) == n_held + 2 * 3 and ev["train_samples_per_prompt"] == 3
    assert ev["train_reward"] == pytest.approx(run["scores"][n_held:].mean())
    assert ev["train_change"] == pytest.approx((run["scores"] - base["scores"])[n_held:].mean())
    # a base evaluation without per-image scores (written before they were kept) is refused
    (tmp_path / "old").mkdir()
    np.savez(tmp_path / "old/images.npz", images=base["images"])
    assert (
        main(
            [
                "finetune",
                *common,
                "--model",
                model,
                "--run",
                "graft",
                "--seed",
                "0",
                "--base",
                str(tmp_path / "old"),
                "--out",
                str(tmp_path / "y"),
            ]
        )
        == 2
    )
    assert "has no per-image scores, this config's evaluation makes" in capsys.readouterr().err
    assert not list((tmp_path / "y").glob("*"))  # refused before fine-tuning: nothing written
    # a run name outside the sweep is a config error, reported in one line
    assert (
        main(
            [
                "finetune",
                *common,
                "--model",
                model,
                "--run",
                "pgraft3",
                "--seed",
                "0",
                "--base",
                base_run,
                "--out",
                str(tmp_path / "x"),
            ]
        )
        == 2
    )
    assert "pgraft3: N_I 3 is not in t2i.pgraft.intermediate_steps" in capsys.readouterr().err


def test_a_json_config_file_keeps_small_floats(tmp_path):
    """json.dumps writes 5e-05, which YAML 1.1 reads as a string; --config files ending in
    .json are read as JSON (the workflow's resolved configs are)."""
    from graftbench.__main__ import _load_config

    cfg = with_change(lambda c: c["graft"]["optim"].update(lr=0.00005))
    path = tmp_path / "config.json"
    path.write_text(__import__("json").dumps(cfg))
    assert "5e-05" in path.read_text()
    assert parse(T2IConfig, _load_config(str(path)), "t2i").graft.optim.lr == 5e-05


def test_the_four_times_budget_override_changes_only_the_budgets():
    """config/t2i_budget_1536.yaml, merged as Snakemake merges a --configfile (recursively),
    gives every method 1,536 queries and leaves the rest of the cpu profile as it is."""
    import yaml
    from snakemake.utils import update_config

    from tests.conftest import ROOT

    config = workflow_config("cpu")
    update_config(config, yaml.safe_load((ROOT / "config/t2i_budget_1536.yaml").read_text()))
    got, cpu = to_dict(resolve(config, "t2i")), to_dict(resolve(workflow_config("cpu"), "t2i"))
    for method in ("graft", "self_fit", "pgraft", "ddpo"):
        assert (
            got[method]["loop"]["reward_budget"] == 1536 == 4 * cpu[method]["loop"]["reward_budget"]
        )
        got[method]["loop"]["reward_budget"] = cpu[method]["loop"]["reward_budget"]
    assert got == cpu
