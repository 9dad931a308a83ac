"""The molecule task's data: canonical SMILES of the source (QM9, MOSES or a file you supply)
split into train and test by prepare-data, and the metrics of a set of molecules."""

from __future__ import annotations

from pathlib import Path

from graftbench import records
from graftbench.config import InputError
from graftbench.tasks.molecule.config import MoleculeConfig, MoleculeDataConfig


def _load_source(cfg: MoleculeDataConfig) -> list[str]:
    from graftbench.tasks.molecule import data

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
    from graftbench.tasks.molecule import data

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
        from graftbench.tasks.molecule.metrics import fcd_reference_stats

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
    from graftbench.tasks.molecule.tokens import split

    try:
        return len(split(smiles, representation))
    except ValueError:
        return float("inf")


def load_split(data_dir: Path, split: str) -> list[str]:
    from graftbench.tasks.molecule.data import read_scored_smiles

    return read_scored_smiles(data_dir / f"{split}.smi")[0]


def reward_fn(cfg: MoleculeConfig):
    """The loop's reward: (SMILES from model.decode, conditions) -> (batch,), 0 for invalid."""
    from graftbench.tasks.molecule.metrics import reward_fn as make

    return make(cfg.reward)


def molecule_metrics(smiles: list[str], train: list[str], cfg: MoleculeConfig) -> dict:
    """validity, uniqueness, novelty, reward (the configured one, invalid = 0), qed and sa
    (raw SA score, 1-10, lower is easier) over valid molecules, intdiv, n_invalid and n
    (`metrics.summary`), for samples as generated."""
    from graftbench.tasks.molecule.metrics import summary

    out = summary(smiles, set(train), reward_fn(cfg))
    names = {"reward_mean": "reward", "qed_mean": "qed", "sa_mean": "sa"}
    return {names.get(k, k): v for k, v in out.items()}
