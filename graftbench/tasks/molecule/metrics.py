"""Molecule-generation metrics (MOSES definitions), drug-likeness scores and the task's rewards.

Generated molecules are SMILES strings, invalid ones included. Set metrics follow MOSES
(Polykovskiy et al., "Molecular Sets (MOSES)", Front. Pharmacol. 2020; upstream molsets 0.3.1,
moses/metrics/metrics.py), re-derived here with this package's `canonical` (no stereo):
validity over all samples, uniqueness over the valid ones, novelty over the unique valid ones,
IntDiv and FCD over the valid ones. GuacaMol (Brown et al., J. Chem. Inf. Model. 2019) defines
validity, uniqueness and novelty the same way, on a fixed 10,000 samples.

Rewards are factories (`reward_fn`) returning callables (smiles, conditions) -> (batch,)
float32 in [0, 1]; an invalid string scores 0 and is counted. Nothing here raises on garbage.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rdkit import Chem, DataStructs

from graftbench.tasks.molecule.data import canonical, parse

Reward = Callable[[Sequence[str], Sequence | None], np.ndarray]


def _canonicals(smiles: Sequence[str]) -> list[str]:
    """Canonical forms of the valid samples, duplicates kept."""
    return [c for c in map(canonical, smiles) if c is not None]


def validity(smiles: Sequence[str]) -> float:
    """Fraction of samples that RDKit parses and sanitises into a non-empty molecule (MOSES
    `fraction_valid`; an empty string is invalid). NaN for no samples."""
    return len(_canonicals(smiles)) / len(smiles) if len(smiles) else float("nan")


def uniqueness(smiles: Sequence[str]) -> float:
    """|distinct canonical SMILES among the valid| / |valid| (MOSES unique@k with k = all
    valid samples, as MOSES computes it after `remove_invalid`). NaN when none is valid."""
    valid = _canonicals(smiles)
    return len(set(valid)) / len(valid) if valid else float("nan")


def novelty(smiles: Sequence[str], train: Collection[str]) -> float:
    """|distinct valid not in `train`| / |distinct valid| (MOSES `novelty`). `train` must hold
    canonical SMILES as `canonical` writes them (`load_qm9`, `read_smiles` do); pass a set
    to reuse it across calls. NaN when no sample is valid."""
    unique = set(_canonicals(smiles))
    train = train if isinstance(train, set | frozenset) else set(train)
    return len(unique - train) / len(unique) if unique else float("nan")


@functools.lru_cache(maxsize=1)
def _sascorer():
    # The SA score ships in RDKit's Contrib folder, outside the importable package. Load the
    # file as a module instead of putting the folder on sys.path for the whole process; it
    # finds its fragment table (fpscores.pkl.gz) next to its own __file__.
    from rdkit.Chem import RDConfig

    path = os.path.join(RDConfig.RDContribDir, "SA_Score", "sascorer.py")
    if not os.path.exists(path):
        raise ModuleNotFoundError(f"{path} is missing: this RDKit build lacks Contrib/SA_Score")
    spec = importlib.util.spec_from_file_location("sascorer", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def qed(mol: Chem.Mol) -> float:
    """QED in [0, 1]: the weighted geometric mean of eight desirability functions of drug
    properties (Bickerton et al., "Quantifying the chemical beauty of drugs", Nat. Chem.
    2012), as RDKit computes it (rdkit.Chem.QED.qed, version 1.1.0)."""
    from rdkit.Chem import QED

    return QED.qed(mol)


def sa_score(mol: Chem.Mol) -> float:
    """Synthetic accessibility in [1, 10], 1 easy (Ertl & Schuffenhauer, J. Cheminform. 2009:
    fragment contributions from PubChem less a complexity penalty); RDKit Contrib/SA_Score."""
    return _sascorer().calculateScore(mol)


def sa_normalised(mol: Chem.Mol) -> float:
    """(10 - SA) / 9 in [0, 1], 1 easiest to make (clipped against rounding at the ends)."""
    return min(max((10.0 - sa_score(mol)) / 9.0, 0.0), 1.0)


def drug_likeness(mol: Chem.Mol) -> float:
    """QED x normalised SA, in [0, 1]: high only when a molecule is both drug-like and easy
    to make. A product, not a mean, because QED is itself a geometric mean of desirabilities
    (Bickerton et al. 2012): this adds synthesisability as one more factor, so neither
    score can make up for a near-zero other (a mean would reward an unmakeable drug-like
    molecule with ~0.5)."""
    return qed(mol) * sa_normalised(mol)


# name -> per-molecule score in [0, 1] of a valid molecule; an invalid string scores 0
REWARDS: dict[str, Callable[[Chem.Mol], float]] = {
    "qed": qed,
    "sa": sa_normalised,
    "drug_likeness": drug_likeness,
    "validity": lambda mol: 1.0,
}


@dataclass
class Scores:
    """One reward over a batch: `values` (batch,) float32 (0 where invalid), `valid` (batch,)
    bool. A molecule RDKit parses but the scorer fails on counts as invalid."""

    values: np.ndarray
    valid: np.ndarray

    @property
    def n_invalid(self) -> int:
        return int((~self.valid).sum())


def score(smiles: Sequence[str], name: str) -> Scores:
    """Reward `name` (a key of `REWARDS`) of each sample; see `Scores`."""
    if name not in REWARDS:
        raise ValueError(f"reward {name!r} is not one of {', '.join(REWARDS)}")
    fn = REWARDS[name]
    values, valid = np.zeros(len(smiles), np.float32), np.zeros(len(smiles), bool)
    for i, s in enumerate(smiles):
        mol = parse(s)
        if mol is None:
            continue
        try:
            values[i], valid[i] = fn(mol), True
        except Exception:  # a sanitised molecule a descriptor chokes on: scored as invalid
            pass
    return Scores(values, valid)


def reward_fn(name: str) -> Reward:
    """The reward `name` (one of "qed", "sa", "drug_likeness", "validity") as a callable
    (smiles, conditions) -> (batch,) float32, 0 for an invalid string; `conditions` is
    ignored (the task is unconditional). Invalid samples are counted where the samples are
    evaluated (`summary`'s n_invalid)."""
    if name not in REWARDS:
        raise ValueError(f"reward {name!r} is not one of {', '.join(REWARDS)}")
    if name in ("sa", "drug_likeness"):
        _sascorer()  # fail here, not at the first batch, when this RDKit lacks the SA score

    def reward(smiles: Sequence[str], conditions: Sequence | None = None) -> np.ndarray:
        return score(smiles, name).values

    return reward


def internal_diversity(smiles: Sequence[str], radius: int = 2, n_bits: int = 1024) -> float:
    """IntDiv_1 = 1 - (1/|G|^2) sum over all ordered pairs (m1, m2) of G x G, self-pairs
    included, of the Tanimoto similarity of Morgan bit fingerprints; G are the valid samples,
    duplicates kept (MOSES `internal_diversity`, p = 1, after Benhenda 2017, "ChemGAN
    challenge"). MOSES uses radius 2 and 1024 bits, our defaults; n_bits changes the number.
    0 for copies of one molecule. NaN when no sample is valid."""
    from rdkit.Chem import rdFingerprintGenerator

    gen = rdFingerprintGenerator.GetMorganGenerator(radius=radius, fpSize=n_bits)
    fps = [gen.GetFingerprint(m) for m in map(parse, smiles) if m is not None]
    if not fps:
        return float("nan")
    # self-pairs are 1 (a molecule with atoms has bits); the off-diagonal is symmetric
    off = sum(sum(DataStructs.BulkTanimotoSimilarity(fp, fps[i + 1 :])) for i, fp in enumerate(fps))
    return 1.0 - (len(fps) + 2.0 * off) / len(fps) ** 2


@dataclass
class FCDStats:
    """ChemNet penultimate-layer statistics of a set, as fcd-torch's `FCD.precalc` returns
    them: `mu` (512,) (float32, fcd-torch's dtype), `sigma` (512, 512) float64; and `n`, the
    number of valid molecules behind them. `save`/`load`: an .npz with mu, sigma and n."""

    mu: np.ndarray
    sigma: np.ndarray
    n: int

    def save(self, path: str | Path) -> None:
        np.savez(path, mu=self.mu, sigma=self.sigma, n=self.n)

    @classmethod
    def load(cls, path: str | Path) -> FCDStats:
        with np.load(path) as f:
            return cls(f["mu"], f["sigma"], int(f["n"]))

    def pref(self) -> dict[str, np.ndarray]:
        """The statistics as fcd-torch takes them (`FCD(pref=...)`, `FCD.metric`)."""
        return {"mu": self.mu, "sigma": self.sigma}


def _fcd_torch():
    try:
        import fcd_torch
    except ImportError as err:
        raise ImportError(
            "FCD needs the fcd-torch package (ChemNet weights included): "
            "pip install fcd-torch==1.0.7"
        ) from err
    return fcd_torch


@functools.lru_cache(maxsize=4)
def _fcd(device: str):
    """fcd-torch's FCD (ChemNet loaded once per device). n_jobs=1 becomes its DataLoader's
    num_workers=0: SMILES are parsed in this process, no worker pool is spawned."""
    return _fcd_torch().FCD(device=device, n_jobs=1, batch_size=512)


def _valid(smiles: Sequence[str]) -> list[str]:
    # Not in fcd-torch: its SmilesDataset raises ValueError at the first invalid SMILES
    # (it does not skip them), while MOSES computes FCD over the valid samples only.
    return [s for s in smiles if parse(s) is not None]


def fcd_reference_stats(smiles: Sequence[str], device: str = "cpu") -> FCDStats:
    """ChemNet statistics (fcd-torch's `FCD.precalc`) of the valid molecules of a reference
    set, compute once and reuse. Invalid ones (`parse`) are left out; fcd-torch
    re-canonicalises the rest with stereo, as MOSES does. ValueError when fewer than 2 are
    valid (no covariance)."""
    valid = _valid(smiles)
    # Not in fcd-torch: precalc only warns and returns {} under 2 molecules, which would
    # surface later as a NaN for every run; a reference set that small is an input error.
    if len(valid) < 2:
        raise ValueError(f"FCD statistics need at least 2 valid molecules, got {len(valid)}")
    stats = _fcd(device).precalc(valid)
    return FCDStats(stats["mu"], stats["sigma"], len(valid))


def frechet_distance(a: FCDStats, b: FCDStats) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)): the squared Frechet distance
    between two Gaussians (Dowson & Landau 1982), as FID (Heusel et al. 2017) and FCD use it;
    fcd-torch's `calculate_frechet_distance` (scipy's `sqrtm`, the real part kept; it raises
    ValueError on a large imaginary part). Symmetric up to rounding."""
    return float(_fcd_torch().calculate_frechet_distance(a.mu, a.sigma, b.mu, b.sigma))


def fcd_from_stats(smiles: Sequence[str], ref: FCDStats, device: str = "cpu") -> float:
    """Frechet ChemNet Distance (Preuer et al., J. Chem. Inf. Model. 2018) of the valid
    samples to precomputed reference statistics: fcd-torch's `FCD(gen=..., pref=...)` on
    the valid samples; invalid samples are left out, as MOSES does. NaN with fewer than 2
    valid samples (no covariance)."""
    valid = _valid(smiles)
    # fcd-torch returns NaN here too, but with two warnings, the second blaming the
    # reference (its `metric` checks the generated sigma under "check ref")
    if len(valid) < 2:
        return float("nan")
    return float(_fcd(device)(gen=valid, pref=ref.pref()))


def fcd(smiles: Sequence[str], ref_smiles: Sequence[str], device: str = "cpu") -> float:
    """FCD of the valid samples to the valid molecules of a reference set, equal to
    fcd-torch's `FCD(gen=smiles, ref=ref_smiles)` when all are valid; see `fcd_reference_stats`
    (ValueError under 2 valid reference molecules) and `fcd_from_stats` (NaN under 2 valid
    samples)."""
    return fcd_from_stats(smiles, fcd_reference_stats(ref_smiles, device), device)


def summary(
    smiles: Sequence[str], train: Collection[str], reward: str | Reward = "drug_likeness"
) -> dict[str, float]:
    """Set metrics of a batch of samples, for a run's metrics line.

    validity, uniqueness, novelty (against canonical `train`), intdiv (see each function);
    reward_mean over all samples with invalid ones at 0; qed_mean and sa_mean (raw SA,
    1..10) over the valid samples; n_invalid, n. NaN where a mean has no molecule.
    """
    mols = [m for m in map(parse, smiles) if m is not None]
    rewards = reward_fn(reward) if isinstance(reward, str) else reward
    return {
        "validity": validity(smiles),
        "uniqueness": uniqueness(smiles),
        "novelty": novelty(smiles, train),
        "intdiv": internal_diversity(smiles),
        "reward_mean": float(np.mean(rewards(smiles, None))) if len(smiles) else float("nan"),
        "qed_mean": float(np.mean([qed(m) for m in mols])) if mols else float("nan"),
        "sa_mean": float(np.mean([sa_score(m) for m in mols])) if mols else float("nan"),
        "n_invalid": len(smiles) - len(mols),
        "n": len(smiles),
    }
