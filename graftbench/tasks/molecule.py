"""Unconditional molecule generation: GRAFT (with and without de-duplication), P-GRAFT and
DDPO against the base at equal reward queries, on QM9 SMILES with rdkit rewards.

Data flow (one function per workflow rule):
    prepare_data   -> data/train.smi, data/test.smi (canonical SMILES), data/summary.json
    pretrain       -> model.pt (EMA weights, vocabulary + config), pretrain.jsonl
    evaluate_base  -> base/seed{n}/: eval.json, metrics.json, samples.tsv, tokens.npz, grid.png
    finetune       -> {run}/seed{n}/: the same plus rounds.jsonl and model.pt; run is graft,
                      graft_dedup, ddpo or pgraft{N_I}
    aggregate      -> tables/molecule.{csv,md}; figures molecule_reward_vs_queries.png,
                      molecule_pgraft_vs_ni.png, molecule_samples.png

Generation is unconditional: every group of M samples in the loop shares the one condition
"molecule", so GRAFT's top-K acts within groups of M and DDPO's per-prompt statistics are
running statistics of the whole model. The evaluation draws `evaluate.samples` fresh
molecules with the same random numbers per seed for every method (P-GRAFT stitched at N_I)
and scores them against the held-out test molecules (FCD) and the training set (novelty);
none of them is a sample the loop scored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from graftbench import records
from graftbench.config import ConfigError, InputError
from graftbench.methods.ddpo import DDPOConfig
from graftbench.methods.graft import GraftConfig
from graftbench.methods.pgraft import PGraftSweep
from graftbench.methods.selection import SelectionConfig
from graftbench.molecule.model import MoleculeModelConfig
from graftbench.tasks.finetuning import check_methods, run_names
from graftbench.train import TrainConfig

Method = Literal["base", "graft", "graft_dedup", "pgraft", "ddpo"]
Reward = Literal["drug_likeness", "qed", "sa", "validity"]
CONDITION = "molecule"  # the one condition of unconditional generation


@dataclass
class MoleculeDataConfig:
    source: Literal["qm9", "moses", "file"] = "qm9"  # qm9: the qm9pack wheel's 130,831
    # molecules; moses: the molsets wheel's MOSES train split; file: `file`
    file: str = ""  # a SMILES file you supply (one per line), for source: file
    max_train: int = 20000  # training molecules kept after the split (0 = all)
    n_test: int = 2000  # held-out molecules: the FCD reference, never trained on
    split_seed: int = 0  # seed of the train/test split and of the max_train subset

    def __post_init__(self):
        if self.source == "file" and not self.file:
            raise ConfigError("molecule.data.file: source 'file' needs a SMILES file")
        if self.n_test < 1 or self.max_train < 0:
            raise ConfigError(
                f"molecule.data: n_test ({self.n_test}) must be at least 1 and "
                f"max_train ({self.max_train}) at least 0"
            )


@dataclass
class MoleculeEvaluateConfig:
    num_steps: int = 20  # unmasking steps of the evaluation sampler, every method alike (and
    # P-GRAFT's loop: it switches models at a state index of this grid)
    samples: int = 1000  # fresh molecules sampled per evaluation
    batch_size: int = 500  # molecules per sampler call (memory, not maths)
    curve_samples: int = 200  # molecules scored after fine-tuning rounds (the curve)
    curve_every: int = 1  # rounds between curve points (the last round always gets one)
    fcd: bool = True  # Frechet ChemNet Distance to the test molecules (fcd-torch)
    seed_offset: int = 1000  # evaluation sampler seed = run seed + this

    def __post_init__(self):
        for key in ("num_steps", "samples", "batch_size", "curve_samples", "curve_every"):
            if getattr(self, key) < 1:
                raise ConfigError(
                    f"molecule.evaluate.{key}: {getattr(self, key)} must be at least 1"
                )


@dataclass
class MoleculeConfig:
    methods: list[Method] = field(
        default_factory=lambda: ["base", "graft", "graft_dedup", "pgraft", "ddpo"]
    )
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])  # fine-tuning + evaluation seeds
    data: MoleculeDataConfig = field(default_factory=MoleculeDataConfig)
    reward: Reward = "drug_likeness"  # what fine-tuning maximises (molecule.metrics)
    model: MoleculeModelConfig = field(default_factory=MoleculeModelConfig)  # the base model
    pretrain: TrainConfig = field(default_factory=TrainConfig)  # its pre-training
    graft: GraftConfig = field(default_factory=GraftConfig)  # loop.seed: replaced by the run's
    graft_dedup: GraftConfig = field(
        default_factory=lambda: GraftConfig(selection=SelectionConfig(dedup=True))
    )  # GRAFT with de-duplication (selection.dedup must be true)
    pgraft: PGraftSweep = field(default_factory=PGraftSweep)
    ddpo: DDPOConfig = field(default_factory=DDPOConfig)
    evaluate: MoleculeEvaluateConfig = field(default_factory=MoleculeEvaluateConfig)

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

    def runs(self) -> list[str]:
        """Run names, in table order: base, graft, graft_dedup, pgraft{N_I}..., ddpo."""
        return run_names(self)


# ------------------------------------------------------------------------------------- data


def _load_source(cfg: MoleculeDataConfig) -> list[str]:
    from graftbench.molecule import data

    if cfg.source == "qm9":
        return data.load_qm9()
    if cfg.source == "moses":
        return list(dict.fromkeys(s for s in map(data.canonical, data.load_moses("train")) if s))
    if not Path(cfg.file).is_file():
        raise InputError(
            f"molecule.data.file: {cfg.file} does not exist; source 'file' reads "
            "a SMILES file you supply (one SMILES per line)"
        )
    return list(dict.fromkeys(data.read_smiles(cfg.file)))


def prepare_data(cfg: MoleculeConfig, out: Path) -> dict:
    """Canonical, unique SMILES of the source split into train and test (the training part
    cut to `max_train`), then those longer than the model's `length` tokens dropped from
    both (counted: encoding every source molecule first would cost minutes on MOSES); the
    real test molecules' metrics recorded as the reference a perfect model would reach."""
    from graftbench.molecule import data

    smiles = _load_source(cfg.data)
    if len(smiles) <= cfg.data.n_test:
        raise InputError(
            f"molecule data: {len(smiles)} molecules, not more than "
            f"molecule.data.n_test = {cfg.data.n_test}"
        )
    train, test = data.split(smiles, cfg.data.n_test / len(smiles), cfg.data.split_seed)
    if cfg.data.max_train and len(train) > cfg.data.max_train:
        import numpy as np

        keep = np.random.default_rng(cfg.data.split_seed + 1).permutation(len(train))
        train = [train[i] for i in sorted(keep[: cfg.data.max_train])]
    rep, n = cfg.model.representation, len(train) + len(test)
    train, test = (
        [s for s in part if _length(s, rep) <= cfg.model.length] for part in (train, test)
    )
    if not train or len(test) < 2:
        raise InputError(
            f"molecule data: {len(train)} training and {len(test)} test molecules "
            f"of at most molecule.model.length = {cfg.model.length} {rep} tokens"
        )
    out.mkdir(parents=True, exist_ok=True)
    data.write_smiles(out / "train.smi", train)
    data.write_smiles(out / "test.smi", test)
    if cfg.evaluate.fcd:  # the test set's ChemNet statistics, computed once for every run
        from graftbench.molecule.metrics import fcd_reference_stats

        with records.atomic_path(out / "fcd_test.npz") as tmp, open(tmp, "wb") as f:
            fcd_reference_stats(test).save(f)
    summary = {
        "source": cfg.data.source,
        "n_source": len(smiles),
        "representation": rep,
        "n_too_long": n - len(train) - len(test),
        "n_train": len(train),
        "n_test": len(test),
        "real_test": molecule_metrics(test[: cfg.evaluate.samples], train, cfg),
    }
    records.write_json(out / "summary.json", summary)  # last: marks finished data
    return summary


def _length(smiles: str, representation: str) -> float:
    """Tokens of `smiles` in `representation`; inf if it has no such spelling (left out)."""
    from graftbench.molecule.tokens import split

    try:
        return len(split(smiles, representation))
    except ValueError:
        return float("inf")


def load_split(data_dir: Path, split: str) -> list[str]:
    from graftbench.molecule.data import read_scored_smiles

    return read_scored_smiles(data_dir / f"{split}.smi")[0]


# ---------------------------------------------------------------------------------- metrics


def reward_fn(cfg: MoleculeConfig):
    """The loop's reward: (SMILES from model.decode, conditions) -> (batch,), 0 for invalid."""
    from graftbench.molecule.metrics import reward_fn as make

    return make(cfg.reward)


def molecule_metrics(smiles: list[str], train: list[str], cfg: MoleculeConfig) -> dict:
    """validity, uniqueness, novelty, reward (the configured one, invalid = 0), qed and sa
    (raw SA score, 1-10, lower is easier) over valid molecules, intdiv, n_invalid and n
    (`metrics.summary`), for samples as generated."""
    from graftbench.molecule.metrics import summary

    out = summary(smiles, set(train), reward_fn(cfg))
    names = {"reward_mean": "reward", "qed_mean": "qed", "sa_mean": "sa"}
    return {names.get(k, k): v for k, v in out.items()}
