"""The layout task's typed config (import-light: no diffusers)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from graftbench.config import ConfigError, Count, Natural, NonNegative, Seeds
from graftbench.finetuning.task import BestOfMConfig, check_methods, run_names
from graftbench.methods.ddpo import DDPOConfig
from graftbench.methods.graft import GraftConfig
from graftbench.methods.pgraft import PGraftSweep
from graftbench.methods.selection import SelectionConfig
from graftbench.tasks.layout.data import LayoutDataConfig
from graftbench.tasks.layout.features import LayoutFeatureConfig
from graftbench.tasks.layout.metrics import RewardConfig
from graftbench.tasks.layout.model import LayoutModelConfig
from graftbench.train import TrainConfig

Method = Literal["base", "graft", "graft_threshold", "self_fit", "pgraft", "ddpo", "best_of_m"]


@dataclass
class CocoFiles:
    """PubLayNet (or RICO in COCO form) annotation files the user supplies (paper profile)."""

    train: str = ""  # path to the training annotations, e.g. publaynet/train.json
    test: str = ""  # path to the held-out annotations, e.g. publaynet/val.json
    max_train: Natural = 0  # keep at most this many training layouts (0 = all)


@dataclass
class LayoutEvaluateConfig:
    num_steps: Count = 20  # DDIM steps of the evaluation sampler, every method alike (and
    # P-GRAFT's loop: it switches models at a state index of this grid)
    eta: NonNegative = 0.0  # 0: deterministic DDIM, so the same noise gives comparable layouts
    heldout_conditions: Natural = 1000  # test layouts whose classes are sampled (0 = all)
    train_samples: Count = 4  # samples per fine-tuning condition (training reward, diversity)
    batch_size: Count = 512  # layouts per sampler call (memory, not maths)
    curve_conditions: Count = 200  # held-out conditions scored after fine-tuning rounds
    curve_every: Count = 1  # rounds between curve points (the last round always gets one)
    seed_offset: int = 1000  # evaluation noise seed = run seed + this


@dataclass
class LayoutConfig:
    methods: list[Method] = field(  # the table's runs (base: the pre-trained model)
        default_factory=lambda: ["base", "graft", "graft_threshold", "pgraft", "ddpo"]
    )
    seeds: Seeds = field(default_factory=lambda: [0, 1, 2])  # fine-tuning + evaluation seeds
    source: Literal["generated", "coco"] = "generated"  # generated: our PubLayNet-like pages;
    # coco: the annotation files under `coco`
    data: LayoutDataConfig = field(default_factory=LayoutDataConfig)  # generator and split
    coco: CocoFiles = field(default_factory=CocoFiles)  # used when source = coco
    finetune_conditions: Count = 64  # class sequences of training layouts that fine-tuning
    # draws from (seeded by data.seed; the same for every method and seed) and that the
    # training reward is scored on
    reward: RewardConfig = field(default_factory=RewardConfig)  # the aesthetic reward
    model: LayoutModelConfig = field(default_factory=LayoutModelConfig)  # the base model
    pretrain: TrainConfig = field(default_factory=TrainConfig)  # its pre-training
    features: LayoutFeatureConfig = field(default_factory=LayoutFeatureConfig)  # FID network
    graft: GraftConfig = field(default_factory=GraftConfig)  # loop.seed: replaced by the run's
    graft_threshold: GraftConfig = field(
        default_factory=lambda: GraftConfig(selection=SelectionConfig(rule="threshold", tau=0.5))
    )  # GRAFT with the threshold rule
    pgraft: PGraftSweep = field(default_factory=PGraftSweep)  # P-GRAFT, one run per N_I
    ddpo: DDPOConfig = field(default_factory=DDPOConfig)  # the policy-gradient baseline
    self_fit: GraftConfig = field(
        default_factory=lambda: GraftConfig(selection=SelectionConfig(rule="all"))
    )  # reference run: GRAFT's update on all M samples (selection.rule must be all)
    best_of_m: BestOfMConfig = field(default_factory=BestOfMConfig)  # reference run: the
    # base's best of m samples by the reward, no fine-tuning
    evaluate: LayoutEvaluateConfig = field(default_factory=LayoutEvaluateConfig)  # scoring

    def __post_init__(self):
        if self.model.max_elements != self.data.max_elements:
            raise ConfigError(
                f"layout.model.max_elements: {self.model.max_elements} must equal "
                f"layout.data.max_elements ({self.data.max_elements})"
            )
        if self.source == "coco" and not (self.coco.train and self.coco.test):
            raise ConfigError(
                "layout.coco.train and layout.coco.test: source 'coco' needs both "
                "annotation files (COCO-style JSON, e.g. PubLayNet's)"
            )
        held = min(self.evaluate.heldout_conditions or self.data.n_test, self.data.n_test)
        if self.source == "generated" and held <= self.features.dim:
            raise ConfigError(
                f"layout.evaluate.heldout_conditions: {held} held-out layouts give FID a "
                f"singular covariance of its features.dim = {self.features.dim} features; it "
                f"needs at least {self.features.dim + 1}"
            )
        check_methods(self, "layout")

    def user_files(self) -> list[str]:
        """The files you supply that this config reads (the workflow checks they exist)."""
        return [self.coco.train, self.coco.test] if self.source == "coco" else []

    def runs(self) -> list[str]:
        """Run names, in table order: base, graft, pgraft{N_I}..., ddpo."""
        return run_names(self)
