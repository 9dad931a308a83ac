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
    """ChemNet penultimate-layer statistics of a set: `mu` (512,), `sigma` (512, 512), n."""

    mu: np.ndarray
    sigma: np.ndarray
    n: int

    def save(self, path: str | Path) -> None:
        np.savez(path, mu=self.mu, sigma=self.sigma, n=self.n)

    @classmethod
    def load(cls, path: str | Path) -> FCDStats:
        with np.load(path) as f:
            return cls(f["mu"], f["sigma"], int(f["n"]))


@functools.lru_cache(maxsize=4)
def _chemnet(device: str):
    try:
        import fcd_torch
        import torch
        from fcd_torch.utils import load_imported_model
    except ImportError as err:
        raise ImportError(
            "FCD needs the fcd-torch package (ChemNet weights included): "
            "pip install fcd-torch==1.0.7"
        ) from err
    path = os.path.join(os.path.dirname(fcd_torch.__file__), "ChemNet_v0.13_pretrained.pt")
    return load_imported_model(torch.load(path, weights_only=True)).eval().to(device)


def _activations(smiles: Sequence[str], device: str, batch_size: int = 512) -> np.ndarray:
    """(n, 512) ChemNet activations of valid SMILES.

    Adapted from fcd_torch 1.0.7's FCD.get_predictions: the same one-hot encoding
    (SmilesDataset, which re-canonicalises with stereo as MOSES does), batched here without
    a DataLoader, and stacked with np.concatenate (np.row_stack is deprecated in numpy 2).
    """
    import torch
    from fcd_torch.utils import SmilesDataset

    net, data = _chemnet(device), SmilesDataset(list(smiles), canonize=True)
    out = []
    with torch.inference_mode():
        for start in range(0, len(data), batch_size):
            x = np.stack([data[i] for i in range(start, min(start + batch_size, len(data)))])
            x = torch.as_tensor(x, dtype=torch.float32, device=device).transpose(1, 2)
            out.append(net(x).cpu().double().numpy())
    return np.concatenate(out)


def fcd_reference_stats(smiles: Sequence[str], device: str = "cpu") -> FCDStats:
    """ChemNet statistics of the valid molecules of a reference set (compute once, reuse)."""
    valid = [s for s in smiles if parse(s) is not None]
    if len(valid) < 2:
        raise ValueError(f"FCD statistics need at least 2 valid molecules, got {len(valid)}")
    act = _activations(valid, device)
    return FCDStats(act.mean(0), np.cov(act, rowvar=False), len(valid))


def frechet_distance(a: FCDStats, b: FCDStats) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)): the squared Frechet distance
    between two Gaussians (Dowson & Landau 1982), as FID (Heusel et al. 2017) and FCD use it.

    Tr (S_a S_b)^(1/2) = Tr (R S_b R)^(1/2) with R = S_a^(1/2), the product being similar to
    R S_b R, which is symmetric PSD: two `eigh` instead of scipy's general `sqrtm` (same
    value to ~1e-12 relative on 512-d covariances, several times faster, and never complex).
    """
    w, v = np.linalg.eigh(a.sigma)
    root = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    tr_covmean = np.sqrt(np.clip(np.linalg.eigvalsh(root @ b.sigma @ root), 0, None)).sum()
    diff = a.mu - b.mu
    return float(diff @ diff + np.trace(a.sigma) + np.trace(b.sigma) - 2 * tr_covmean)


def fcd_from_stats(smiles: Sequence[str], ref: FCDStats, device: str = "cpu") -> float:
    """Frechet ChemNet Distance (Preuer et al., J. Chem. Inf. Model. 2018) of the valid
    samples to precomputed reference statistics; invalid samples are left out, as MOSES
    does. NaN with fewer than 2 valid samples (no covariance)."""
    try:
        gen = fcd_reference_stats(smiles, device)
    except ValueError:
        return float("nan")
    return frechet_distance(gen, ref)


def fcd(smiles: Sequence[str], ref_smiles: Sequence[str], device: str = "cpu") -> float:
    """FCD of the valid samples to a reference set; see `fcd_from_stats`."""
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
