"""The text-to-image task's typed config (import-light: no diffusers or transformers)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, ClassVar, Literal

from graftbench.config import ConfigError, Count, Natural, NonNegative, Range, Seeds
from graftbench.finetuning.task import BestOfMConfig, check_methods, run_names
from graftbench.methods.ddpo import DDPOConfig
from graftbench.methods.graft import GraftConfig
from graftbench.methods.pgraft import PGraftSweep
from graftbench.methods.selection import SelectionConfig
from graftbench.tasks.t2i.model_config import StableDiffusionConfig, Text2ImageConfig
from graftbench.tasks.t2i.scenes import SceneConfig
from graftbench.tasks.t2i.verifier import VerifierConfig
from graftbench.train import TrainConfig

Method = Literal["base", "graft", "self_fit", "pgraft", "ddpo", "best_of_m"]


@dataclass
class PromptsConfig:
    source: Literal["scenes", "genai-bench", "geneval", "t2i-compbench"] = "scenes"  # scenes:
    # the rendered-scene grammar, split by `scenes`; otherwise a benchmark's prompt set read
    # from `path` (graftbench/tasks/t2i/prompt_sets.py) and split here
    path: str = ""  # the prompt set's file (T2I-CompBench++: its folder); unused for scenes
    heldout_fraction: Annotated[float, Range(0, 1, open_min=True, open_max=True)] = (
        0.2  # prompt sets: share of each category held out from
    )
    # fine-tuning (evaluated only)
    split_seed: int = 0  # prompt sets: seed of that split

    def __post_init__(self):
        if self.source != "scenes" and not self.path:
            raise ConfigError(
                f"t2i.prompts.path: empty; prompts from {self.source} are read "
                "from a file you supply (README, 'Paper scale')"
            )


@dataclass
class EvaluateConfig:
    num_steps: Count = 10  # DDIM steps of the evaluation sampler, every method alike
    eta: NonNegative = 0.0  # 0: deterministic DDIM, so one noise gives comparable images across
    # methods (drift is measured on them)
    samples_per_prompt: Count = 2  # images per held-out prompt (diversity compares them)
    train_samples_per_prompt: Count = 2  # images per fine-tuning prompt (the training reward;
    # its change from the base is paired image by image, so more images resolve smaller
    # changes: 64 images give a 95% CI of about +-0.03 on the verifier's score)
    batch_size: Count = 64  # images per sampler call (memory, not maths)
    curve_prompts: Count = 32  # held-out prompts (one image each) scored after fine-tuning
    # rounds, for the reward-against-queries curve
    curve_every: Count = 1  # rounds between curve points (the last round always gets one)
    seed_offset: int = 1000  # evaluation noise seed = run seed + this (apart from training's)
    MOVED: ClassVar[dict[str, str]] = {
        "n_train_prompts": "t2i.finetune_prompts (the training reward is scored on the prompts "
        "fine-tuning drew from)"
    }


@dataclass
class T2IConfig:
    methods: list[Method] = field(default_factory=lambda: ["base", "graft", "pgraft", "ddpo"])
    # the table's runs (base: the pre-trained model, evaluated as the others are)
    seeds: Seeds = field(default_factory=lambda: [0, 1, 2])  # fine-tuning + evaluation seeds
    scenes: SceneConfig = field(default_factory=SceneConfig)  # grammar, split, renderer
    finetune_prompts: Natural = 32  # training prompts the fine-tuning loop draws from: a fixed
    # seeded subset of the training split (scenes.split_seed), the same for every method and
    # seed; 0 = the whole split. The training reward is scored on exactly these prompts.
    prompts: PromptsConfig = field(default_factory=PromptsConfig)  # where prompts come from
    verifier: VerifierConfig = field(default_factory=VerifierConfig)  # the reward and metric
    # of scene prompts (when `scorer` is empty)
    scorer: list[str] = field(default_factory=list)  # command of an external scorer process
    # (graftbench/tasks/t2i/scorer.py; e.g. [/opt/t2v/bin/python, scorers/vqascore.py, --cache-dir,
    # /data/hf]) that gives the reward and metrics instead of the verifier; empty: the verifier
    model: Text2ImageConfig = field(default_factory=Text2ImageConfig)  # the base model
    pretrain: TrainConfig = field(default_factory=TrainConfig)  # its pre-training
    stable_diffusion: StableDiffusionConfig | None = None  # set: the base is this SD-family
    # folder instead (`model` and `pretrain` unused; `pretrain` only checks the folder)
    graft: GraftConfig = field(default_factory=GraftConfig)  # loop.seed: replaced by the run's
    pgraft: PGraftSweep = field(default_factory=PGraftSweep)  # P-GRAFT, one run per N_I
    ddpo: DDPOConfig = field(default_factory=DDPOConfig)  # the policy-gradient baseline
    self_fit: GraftConfig = field(
        default_factory=lambda: GraftConfig(selection=SelectionConfig(rule="all"))
    )  # reference run: GRAFT's update on all M samples (selection.rule must be all)
    best_of_m: BestOfMConfig = field(default_factory=BestOfMConfig)  # reference run: the
    # base's best of m samples by the reward, no fine-tuning
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)  # how every run is scored

    def __post_init__(self):
        check_methods(self, "t2i")
        if self.prompts.source != "scenes" and not self.scorer:
            raise ConfigError(
                f"t2i.scorer: empty, but the verifier reads scene prompts only; "
                f"prompts from {self.prompts.source} need a scorer command, e.g. "
                "VQAScore's (README, 'Paper scale')"
            )
        if self.stable_diffusion is not None and not self.stable_diffusion.path:
            raise ConfigError(
                "t2i.stable_diffusion.path: empty; give the local diffusers "
                "folder of the base (README, 'Paper scale')"
            )

    def user_files(self) -> list[str]:
        """The files you supply that this config reads (the workflow checks they exist): the
        prompt file, the Stable Diffusion folder, and the paths in the scorer's command."""
        out = [self.prompts.path] if self.prompts.source != "scenes" else []
        if self.stable_diffusion is not None:
            out.append(self.stable_diffusion.path)
        return out + [a for a in self.scorer if "/" in a and not a.startswith("-")]

    def runs(self) -> list[str]:
        """Run names, in table order: base, graft, pgraft{N_I}..., ddpo."""
        return run_names(self)
