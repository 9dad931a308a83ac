"""The molecule task's typed config (import-light: no rdkit or diffusers)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from graftbench.config import ConfigError, Count, Natural, Seeds
from graftbench.finetuning.task import BestOfMConfig, check_methods, run_names
from graftbench.methods.ddpo import DDPOConfig
from graftbench.methods.graft import GraftConfig
from graftbench.methods.pgraft import PGraftSweep
from graftbench.methods.selection import SelectionConfig
from graftbench.tasks.molecule.model import MoleculeModelConfig
from graftbench.train import TrainConfig

Method = Literal["base", "graft", "graft_dedup", "self_fit", "pgraft", "ddpo", "best_of_m"]
Reward = Literal["drug_likeness", "qed", "sa", "validity"]
CONDITION = "molecule"  # the one condition of unconditional generation


@dataclass
class MoleculeDataConfig:
    source: Literal["qm9", "moses", "file"] = "qm9"  # qm9: the qm9pack wheel's 130,831
    # molecules; moses: the molsets wheel's MOSES train split; file: `file`
    file: str = ""  # a SMILES file you supply (one per line), for source: file
    max_train: Natural = 20000  # training molecules kept after the split (0 = all)
    n_test: Count = 2000  # held-out molecules: the FCD reference, never trained on
    split_seed: int = 0  # seed of the train/test split and of the max_train subset

    def __post_init__(self):
        if self.source == "file" and not self.file:
            raise ConfigError("molecule.data.file: source 'file' needs a SMILES file")


@dataclass
class MoleculeEvaluateConfig:
    num_steps: Count = 20  # unmasking steps of the evaluation sampler, every method alike (and
    # P-GRAFT's loop: it switches models at a state index of this grid)
    samples: Count = 1000  # fresh molecules sampled per evaluation
    batch_size: Count = 500  # molecules per sampler call (memory, not maths)
    curve_samples: Count = 200  # molecules scored after fine-tuning rounds (the curve)
    curve_every: Count = 1  # rounds between curve points (the last round always gets one)
    fcd: bool = True  # Frechet ChemNet Distance to the test molecules (fcd-torch)
    seed_offset: int = 1000  # evaluation sampler seed = run seed + this


@dataclass
class MoleculeConfig:
    methods: list[Method] = field(  # the table's runs (base: the pre-trained model)
        default_factory=lambda: ["base", "graft", "graft_dedup", "pgraft", "ddpo"]
    )
    seeds: Seeds = field(default_factory=lambda: [0, 1, 2])  # fine-tuning + evaluation seeds
    data: MoleculeDataConfig = field(default_factory=MoleculeDataConfig)  # molecules, split
    reward: Reward = "drug_likeness"  # what fine-tuning maximises (its metrics.py)
    model: MoleculeModelConfig = field(default_factory=MoleculeModelConfig)  # the base model
    pretrain: TrainConfig = field(default_factory=TrainConfig)  # its pre-training
    graft: GraftConfig = field(default_factory=GraftConfig)  # loop.seed: replaced by the run's
    graft_dedup: GraftConfig = field(
        default_factory=lambda: GraftConfig(selection=SelectionConfig(dedup=True))
    )  # GRAFT with de-duplication (selection.dedup must be true)
    pgraft: PGraftSweep = field(default_factory=PGraftSweep)  # P-GRAFT, one run per N_I
    ddpo: DDPOConfig = field(default_factory=DDPOConfig)  # the policy-gradient baseline
    self_fit: GraftConfig = field(
        default_factory=lambda: GraftConfig(selection=SelectionConfig(rule="all"))
    )  # reference run: GRAFT's update on all M samples (selection.rule must be all)
    best_of_m: BestOfMConfig = field(default_factory=BestOfMConfig)  # reference run: the
    # base's best of m samples by the reward, no fine-tuning
    evaluate: MoleculeEvaluateConfig = field(default_factory=MoleculeEvaluateConfig)  # scoring

    def __post_init__(self):
        if "graft_dedup" in self.methods and not self.graft_dedup.selection.dedup:
            raise ConfigError(
                "molecule.graft_dedup.selection.dedup: must be true (it is the "
                "de-duplicated GRAFT run)"
            )
        if self.model.num_train_timesteps < self.evaluate.num_steps:
            raise ConfigError(
                f"molecule.evaluate.num_steps: {self.evaluate.num_steps} exceeds "
                f"molecule.model.num_train_timesteps "
                f"({self.model.num_train_timesteps})"
            )
        check_methods(self, "molecule")

    def user_files(self) -> list[str]:
        """The files you supply that this config reads (the workflow checks they exist)."""
        return [self.data.file] if self.data.source == "file" else []

    def runs(self) -> list[str]:
        """Run names, in table order: base, graft, graft_dedup, pgraft{N_I}..., ddpo."""
        return run_names(self)
