"""Adding a task is one package: this module defines a whole reward fine-tuning task (a 2-D
two-mode mixture, a closed-form reward preferring the right mode), registers it, and runs the
base, GRAFT, P-GRAFT, DDPO and the self_fit and best_of_m references through the command line, the registry and the shared runner,
with no edit to shared code. The README's "Adding a task, a model or a reward" points here."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler

from graftbench import records, tasks
from graftbench.__main__ import build_parser, main
from graftbench.config import parse, to_dict
from graftbench.finetuning.build import sample_final
from graftbench.finetuning.task import BestOfMConfig, Evaluation, check_methods, run_names
from graftbench.finetuning.verbs import finetune_verbs
from graftbench.methods.ddpo import DDPOConfig
from graftbench.methods.graft import GraftConfig
from graftbench.methods.pgraft import PGraftSweep
from graftbench.models.diffusion import DiffusionAdapter

MODES = torch.tensor([[-1.0, 0.0], [1.0, 0.0]])  # an even mixture, std 0.25 around each


def reward(x, conditions) -> torch.Tensor:
    """Closed form, highest at the right mode: -|x - (1, 0)|."""
    return -(x - MODES[1]).norm(dim=1)


class ToyModel(DiffusionAdapter):
    """A v-predicting MLP over 2-D points, unconditional."""

    prediction_type, sample_shape = "v_prediction", (2,)

    def __init__(self):
        self.network = torch.nn.Sequential(
            torch.nn.Linear(3, 64),
            torch.nn.SiLU(),
            torch.nn.Linear(64, 64),
            torch.nn.SiLU(),
            torch.nn.Linear(64, 2),
        )
        self.alphas_cumprod = self.scheduler("ddim").alphas_cumprod

    def denoise(self, x, t, cond=None):
        return self.network(torch.cat([x, t[:, None].float() / 1000], 1))

    def decode(self, x):
        return x

    def scheduler(self, kind: str):
        return DDIMScheduler(
            beta_schedule="squaredcos_cap_v2",
            prediction_type="v_prediction",
            timestep_spacing="trailing",
            set_alpha_to_one=True,
        )

    def save(self, path, config=None):
        records.save_checkpoint(
            path, {"model": self.network.state_dict()}, config or {}, kind="toy model"
        )

    @classmethod
    def load(cls, path, device="cpu"):
        model = cls()
        model.network.load_state_dict(records.load_checkpoint(path, "toy model")["model"])
        return model


@dataclass
class ToyEvaluate:
    num_steps: int = 10  # DDIM steps of the evaluation sampler (and P-GRAFT's loop)
    samples: int = 512  # points per evaluation
    curve_every: int = 1  # rounds between curve points
    seed_offset: int = 1000  # evaluation noise seed = run seed + this


@dataclass
class ToyConfig:
    methods: list[str] = field(
        default_factory=lambda: ["base", "graft", "self_fit", "pgraft", "ddpo", "best_of_m"]
    )
    seeds: list[int] = field(default_factory=lambda: [0])  # fine-tuning + evaluation seeds
    pretrain_steps: int = 600  # optimiser steps of pre-training
    graft: GraftConfig = field(default_factory=GraftConfig)  # GRAFT
    pgraft: PGraftSweep = field(default_factory=PGraftSweep)  # P-GRAFT, one run per N_I
    ddpo: DDPOConfig = field(default_factory=DDPOConfig)  # DDPO
    self_fit: GraftConfig = field(default_factory=GraftConfig)  # GRAFT keeping all M
    best_of_m: BestOfMConfig = field(default_factory=BestOfMConfig)  # best of m, no tuning
    evaluate: ToyEvaluate = field(default_factory=ToyEvaluate)  # how runs are scored

    def __post_init__(self):
        check_methods(self, "toy")

    def runs(self) -> list[str]:
        return run_names(self)


@dataclass
class ToyEvaluation(Evaluation):
    points: np.ndarray | None = None


class ToySession:
    conditions, evaluator, dedup_key = ["toy"], None, None

    def __init__(self, cfg: ToyConfig, base):
        self.cfg, self.base = cfg, base

    def model_input(self, condition):
        return condition

    def reward(self):
        return reward

    def evaluate(self, segments, model, seed: int, best_of: int = 1) -> ToyEvaluation:
        ev = self.cfg.evaluate
        x = sample_final(
            model,
            segments,
            ["toy"] * ev.samples,
            num_steps=ev.num_steps,
            batch=ev.samples,
            seed=seed + ev.seed_offset,
            best_of=best_of,
            reward=reward,
            conditions=["toy"] * ev.samples,
        )
        metrics = {
            "reward": reward(x, None).mean().item(),
            "right": (x[:, 0] > 0).float().mean().item(),
        }
        return ToyEvaluation(metrics, x.numpy())

    def curve(self, segments, model, seed: int, best_of: int = 1) -> float:
        return self.evaluate(segments, model, seed, best_of).metrics["reward"]

    def compare(self, ev: ToyEvaluation) -> dict:
        if self.base is None:
            return {"drift": 0.0}
        base = np.load(self.base / "points.npy")
        return {"drift": float(np.sqrt(((ev.points - base) ** 2).mean()))}

    def write(self, out, ev: ToyEvaluation) -> None:
        np.save(out / "points.npy", ev.points)

    def close(self) -> None:
        pass


class ToyFinetune:
    name, inputs, probe_condition = "toy", (), "toy"

    def load_model(self, path, device):
        return ToyModel.load(path, device)

    def open(self, cfg, inputs, out, device, base):
        return ToySession(cfg, base)

    def describe(self, m: dict) -> str:
        return f"{m['run']}: reward {m['reward']:.3f}, right-mode share {m['right']:.2f}"


def pretrain(cfg: ToyConfig, args) -> None:
    """Fit the mixture with the model's own denoising loss."""
    torch.manual_seed(0)
    model, g = ToyModel(), torch.Generator().manual_seed(0)
    opt = torch.optim.Adam(model.network.parameters(), lr=3e-3)
    for _ in range(cfg.pretrain_steps):
        x0 = MODES[torch.randint(2, (256,), generator=g)] + 0.25 * torch.randn(256, 2, generator=g)
        loss = model.training_loss(x0, None, g)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.save(args.out, to_dict(cfg))


TOY = tasks.Task(
    name="toy",
    summary="a 2-D two-mode mixture (the example of adding a task)",
    config=ToyConfig,
    verbs={"pretrain": pretrain, **finetune_verbs(ToyFinetune())},
    finetune=ToyFinetune(),
)

LOOP = {"reward_budget": 256, "prompts_per_round": 1, "samples_per_prompt": 64, "num_steps": 10}
LOOP = {**LOOP, "eta": 0.0}  # every method's loop sampler but DDPO's, which needs eta > 0
METHOD = {"loop": LOOP, "selection": {"k": 16}, "optim": {"trainable": "full", "lr": 1e-3}}
CONFIG = {
    "graft": {**METHOD, "epochs": 20},
    "self_fit": {**METHOD, "selection": {"rule": "all"}, "epochs": 5},
    "best_of_m": {"m": 4},
    "pgraft": {**METHOD, "epochs": 20, "intermediate_steps": [5]},
    "ddpo": {
        "loop": {**LOOP, "eta": 1.0},
        "optim": {"trainable": "full", "lr": 3e-3},
        "clip_range": 0.2,
    },
}


def test_a_task_defined_in_one_module_runs_every_method(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(tasks._registered, "toy", TOY)
    torch.set_num_threads(1)
    cfg, model = json.dumps(CONFIG), str(tmp_path / "model.pt")
    common = ["--task", "toy", "--config", cfg, "--model", model, "--seed", "0"]
    assert main(["pretrain", "--task", "toy", "--config", cfg, "--out", model]) == 0
    assert main(["evaluate-model", *common, "--out", str(tmp_path / "base")]) == 0
    runs = parse(ToyConfig, CONFIG, "toy").runs()
    assert runs == ["base", "graft", "self_fit", "pgraft5", "ddpo", "best_of_m"]
    for run in runs[1:]:
        out = ["--run", run, "--base", str(tmp_path / "base"), "--out", str(tmp_path / run)]
        assert main(["finetune", *common, *out]) == 0
    got = {
        run: {
            **records.read_json(tmp_path / run / "metrics.json"),
            **records.read_json(tmp_path / run / "eval.json"),
        }
        for run in runs
    }
    base = got["base"]
    assert 0.3 < base["right"] < 0.7  # the pre-trained model has both modes
    for run in runs[1:-1]:
        m = got[run]
        assert m["reward_queries"] == LOOP["reward_budget"] and m["run"] == run
        assert m["sampler_flops"] > 0 and m["drift"] > 0 and math.isfinite(m["curve_reward"])
        assert (tmp_path / run / "rounds.jsonl").exists() and (tmp_path / run / "model.pt").exists()
    # selection moves the mass towards the rewarded mode on this easy problem
    assert got["graft"]["reward"] > base["reward"] + 0.2 and got["graft"]["right"] > 0.8
    # self_fit keeps every sample: its training examples are all it drew, every epoch
    assert got["self_fit"]["train_examples"] == LOOP["reward_budget"] * 5
    # best_of_m: its first draw is the base's noise, so each point scores at least the base's
    # point, at m times the base's sampling FLOPs; no fine-tuning, no model
    best, pts = got["best_of_m"], np.load(tmp_path / "best_of_m" / "points.npy")
    base_pts = torch.as_tensor(np.load(tmp_path / "base" / "points.npy"))
    gain = reward(torch.as_tensor(pts), None) - reward(base_pts, None)
    assert gain.min() >= 0 and (gain > 0).float().mean() > 0.5
    assert best["inference_flops"] == 4 * base["inference_flops"] > 0
    assert best["reward_queries"] == 0 and best["inference_reward_queries"] == 4
    assert not (tmp_path / "best_of_m" / "model.pt").exists()
    assert "graft: reward" in capsys.readouterr().err


def test_a_verb_the_task_lacks_is_one_line(monkeypatch, capsys):
    monkeypatch.setitem(tasks._registered, "toy", TOY)
    assert (
        main(
            [
                "sample",
                "--task",
                "toy",
                "--config",
                "{}",
                "--model",
                "m",
                "--steps",
                "2",
                "--seed",
                "0",
                "--out",
                "o",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "toy task does not offer it" in err and "unconditional" in err


def test_help_lists_each_verbs_tasks_and_explains_every_option(monkeypatch, capsys):
    monkeypatch.setitem(tasks._registered, "toy", TOY)
    with pytest.raises(SystemExit):
        main(["finetune", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "Tasks: t2i, layout, molecule, toy2d, toy." in text
    # every option of every verb says what it means
    verbs = next(a for a in build_parser()._actions if a.dest == "verb").choices
    silent = [
        f"{v} {a.option_strings[0]}"
        for v, p in verbs.items()
        for a in p._actions
        if a.option_strings and a.dest != "help" and not a.help
    ]
    assert silent == []
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "toy: pretrain, evaluate-model, finetune" in capsys.readouterr().out
