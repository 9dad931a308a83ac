"""The t2i task's paper-scale path on CPU: a Stable Diffusion folder as the base (a tiny one
built offline from configs), prompts from a benchmark's file, and an external scorer process
as the reward, chained through the same verbs the workflow calls."""

from __future__ import annotations

import json

import pytest
import torch

from graftbench import records
from graftbench.__main__ import main
from graftbench.config import ConfigError, parse, to_dict
from graftbench.spec import resolve
from graftbench.tasks.t2i.config import T2IConfig
from graftbench.tasks.t2i.prompt_sets import BenchPrompt, split_prompt_set
from graftbench.tasks.t2i.prompts import eval_prompts, finetune_prompts
from tests.conftest import workflow_config
from tests.test_scorer import stand_in

# a stand-in for VQAScore: brighter images score higher, in [0, 1]
BRIGHT = """
import numpy as np
from PIL import Image

def score(images, prompts):
    return [float(np.asarray(Image.open(p)).mean() / 255) for p in images]
"""

GENEVAL = [
    {"tag": "single_object", "prompt": "a photo of a cat"},
    {"tag": "single_object", "prompt": "a photo of a dog"},
    {"tag": "single_object", "prompt": "a photo of a bench"},
    {"tag": "single_object", "prompt": "a photo of a kite"},
    {"tag": "colors", "prompt": "a photo of a red car"},
    {"tag": "colors", "prompt": "a photo of a blue cup"},
    {"tag": "colors", "prompt": "a photo of a green bowl"},
    {"tag": "colors", "prompt": "a photo of a pink vase"},
]


def paper_config(tmp_path, sd_folder) -> dict:
    """The smoke preset with the paper's sources: SD folder, GenEval prompts, a scorer."""
    prompts = tmp_path / "evaluation_metadata.jsonl"
    prompts.write_text("".join(json.dumps(p) + "\n" for p in GENEVAL))
    cfg = to_dict(resolve(workflow_config("smoke"), "t2i"))
    cfg.update(
        methods=["base", "graft", "pgraft", "ddpo"],
        finetune_prompts=0,
        prompts={"source": "geneval", "path": str(prompts), "heldout_fraction": 0.25},
        scorer=stand_in(tmp_path, BRIGHT),
        stable_diffusion={"path": str(sd_folder), "guidance_scale": 3.0},
    )
    lora = {"trainable": "lora", "lora": {"rank": 2}, "lr": 1e-3, "batch_size": 4}
    for method in ("graft", "pgraft", "ddpo"):
        cfg[method]["loop"].update(
            reward_budget=8, prompts_per_round=2, samples_per_prompt=2, num_steps=3, sample_batch=8
        )
        cfg[method]["optim"] = dict(lora)
    cfg["graft"]["selection"]["k"] = cfg["pgraft"]["selection"]["k"] = 1
    cfg["pgraft"]["intermediate_steps"] = [1]
    cfg["ddpo"]["stat_min_count"] = 2
    cfg["evaluate"].update(num_steps=3, samples_per_prompt=2, curve_prompts=2, batch_size=8)
    return cfg


def test_prompt_set_split_holds_out_a_share_of_every_category():
    prompts = [BenchPrompt(str(i), f"p{i}", "a" if i < 10 else "b") for i in range(13)]
    train, held = split_prompt_set(prompts, 0.2, seed=0)
    assert sorted(p.id for p in train + held) == sorted(p.id for p in prompts)
    assert [p.category for p in held].count("a") == 2 and [p.category for p in held].count("b") == 1
    assert split_prompt_set(prompts, 0.2, seed=0) == (train, held)  # seeded
    assert split_prompt_set(prompts, 0.2, seed=1) != (train, held)
    lone = [BenchPrompt("x", "only one", "c")]
    assert split_prompt_set(lone, 0.5, seed=0) == (lone, [])  # never empties a category


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda c: c.update(scorer=[]), r"t2i.scorer: empty, but the verifier reads scene prompts"),
        (lambda c: c["prompts"].update(path=""), r"t2i.prompts.path: empty"),
        (lambda c: c["prompts"].update(heldout_fraction=1.0), r"t2i.prompts.heldout_fraction"),
        (lambda c: c["stable_diffusion"].update(path=""), r"t2i.stable_diffusion.path: empty"),
        (lambda c: c["prompts"].update(source="parti"), r"t2i.prompts.source: 'parti'"),
    ],
)
def test_paper_settings_are_checked_at_load(tmp_path, sd_folder, change, message):
    cfg = paper_config(tmp_path, sd_folder)
    change(cfg)
    with pytest.raises(ConfigError, match=message):
        parse(T2IConfig, cfg, "t2i")


def test_prompts_come_from_the_benchmark_file(tmp_path, sd_folder):
    cfg = parse(T2IConfig, paper_config(tmp_path, sd_folder), "t2i")
    sets = eval_prompts(cfg)
    assert len(sets["heldout"]) == 2 and len(finetune_prompts(cfg)) == 6
    assert {p.category for p in sets["heldout"]} == {"single_object", "colors"}
    texts = {p["prompt"] for p in GENEVAL}
    assert {p.text for p in sets["heldout"] + sets["train"]} == texts


def test_sd_base_with_a_scorer_runs_every_method_through_the_verbs(tmp_path, sd_folder, capsys):
    """pretrain writes a reference to the SD folder; the base and GRAFT, P-GRAFT and DDPO
    (LoRA) runs are scored by the scorer process; the table names the scorer and its
    per-category columns; a missing folder is named before any compute."""
    torch.set_num_threads(1)
    cfg = paper_config(tmp_path, sd_folder)
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    common = ["--task", "t2i", "--config", str(tmp_path / "cfg.json")]
    results = tmp_path / "results" / "t2i"
    model = results / "model.pt"
    assert main(["pretrain", *common, "--out", str(model)]) == 0
    ckpt = records.load_checkpoint(model)
    assert ckpt["model"] == {} and ckpt["config"]["model"]["path"] == str(sd_folder)
    assert (
        main(
            [
                "evaluate-model",
                *common,
                "--model",
                str(model),
                "--seed",
                "0",
                "--out",
                str(results / "base/seed0"),
            ]
        )
        == 0
    )
    base = records.read_json(results / "base/seed0/eval.json")
    assert 0 <= base["heldout_reward"] <= 1 and "heldout_accuracy" not in base
    assert {"heldout_reward_single_object", "heldout_reward_colors"} <= set(base)
    base_run = str(results / "base/seed0")
    for run in ("graft", "pgraft1", "ddpo"):
        out = results / run / "seed0"
        assert (
            main(
                [
                    "finetune",
                    *common,
                    "--model",
                    str(model),
                    "--run",
                    run,
                    "--seed",
                    "0",
                    "--base",
                    base_run,
                    "--out",
                    str(out),
                ]
            )
            == 0
        )
        m = records.read_json(out / "metrics.json")
        assert m["reward_queries"] == 8 and m["evaluator"] == "stand-in 1.2"
        saved = records.load_checkpoint(out / "model.pt")["model"]
        assert saved and all("lora_" in k for k in saved)  # LoRA only, not the folder's weights
        assert records.read_json(out / "eval.json")["drift"] > 0
    table = tmp_path / "tables" / "t2i.csv"
    figures = [str(tmp_path / f"figures/{n}.png") for n in ("curve", "ni", "samples")]
    assert (
        main(
            [
                "aggregate",
                "--task",
                "t2i",
                "--results",
                str(results),
                "--table",
                str(table),
                "--profile",
                "paper",
                *sum((["--figure", f] for f in figures), []),
            ]
        )
        == 0
    )
    md = table.with_suffix(".md").read_text()
    assert "external scorer stand-in 1.2" in md and "geneval" in md
    assert "heldout_reward_colors" in md and str(sd_folder) in md
    # the folder is checked when the job starts, and named
    cfg["stable_diffusion"]["path"] = str(tmp_path / "nowhere")
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    assert main(["pretrain", *common, "--out", str(tmp_path / "x.pt")]) == 2
    assert "nowhere" in capsys.readouterr().err
