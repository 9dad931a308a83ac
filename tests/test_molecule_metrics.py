"""Molecule metrics: MOSES set metrics on hand-counted lists, QED and SA against published
reference values, the rewards on garbage, IntDiv against hand-computed Tanimoto, FCD."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
from rdkit import Chem
from rdkit.Chem import RDConfig, rdFingerprintGenerator

from graftbench.tasks.molecule import metrics as M

GARBAGE = ["", "xyz", "C1CC", "C(", "<mask>", "c1cccc1", "[Xx]", "\x00", None, 42]


def mol(smiles):
    return Chem.MolFromSmiles(smiles)


def test_validity_uniqueness_novelty_by_hand():
    smiles = ["CCO", "OCC", "c1ccccc1", "C1CC", "xyz", ""]
    assert M.validity(smiles) == 3 / 6  # CCO, OCC, benzene
    assert M.uniqueness(smiles) == 2 / 3  # OCC is CCO spelt differently
    assert M.novelty(smiles, {"CCO"}) == 1 / 2  # of {CCO, benzene}, benzene is new
    assert M.novelty(smiles, ["CCO", "c1ccccc1"]) == 0.0
    assert M.novelty(smiles, set()) == 1.0
    for f in (M.uniqueness, lambda s: M.novelty(s, set())):
        assert math.isnan(f(["xyz", ""]))
    assert math.isnan(M.validity([]))


# RDKit's own QED regression values (rdkit/rdkit, rdkit/Chem/UnitTestQED.py, test_examples;
# QED 1.1.0), for drugs whose QED Bickerton et al. 2012 tabulate (0.935, 0.929, 0.779, 0.213).
@pytest.mark.parametrize(
    "smiles, expected",
    [
        ("c1cc2OCOc2cc1OCC1CNCCC1c1ccc(F)cc1", 0.934),  # paroxetine
        ("C1=NOC(C)=C1C(=O)Nc1ccc(cc1)C(F)(F)F", 0.911),  # leflunomide
        ("CN(C)CCCN1c2ccccc2CCc2ccc(Cl)cc21", 0.818),  # clomipramine
        ("CCCCCNC(=N)NN=CC1=CNc2ccc(CO)cc21", 0.235),  # tegaserod
        # values RDKit 2026.9.1 gives: pinned so a change of implementation shows up
        ("c1ccccc1", 0.443),  # benzene
        ("CC(=O)Oc1ccccc1C(=O)O", 0.550),  # aspirin
    ],
)
def test_qed_matches_reference_values(smiles, expected):
    assert M.qed(mol(smiles)) == pytest.approx(expected, abs=1e-3)
    assert M.reward_fn("qed")([smiles], None)[0] == pytest.approx(expected, abs=1e-3)


def test_sa_score_matches_the_reference_file_shipped_with_it():
    # Contrib/SA_Score/data/zim.100.txt: ZINC molecules with the authors' SA (3 decimals)
    path = os.path.join(RDConfig.RDContribDir, "SA_Score", "data", "zim.100.txt")
    rows = [line.split("\t") for line in open(path).read().splitlines()[1:11]]
    for smiles, _, expected in rows:
        assert M.sa_score(mol(smiles)) == pytest.approx(float(expected), abs=1e-3)
    assert M.sa_score(mol("c1ccccc1")) == pytest.approx(1.0, abs=1e-6)  # SA's easy end
    assert M.sa_normalised(mol("c1ccccc1")) == pytest.approx(1.0)
    sa = M.sa_score(mol("CC(=O)Oc1ccccc1C(=O)O"))
    assert M.sa_normalised(mol("CC(=O)Oc1ccccc1C(=O)O")) == pytest.approx((10 - sa) / 9)


def test_drug_likeness_is_qed_times_normalised_sa():
    for s in ("c1ccccc1", "CC(=O)Oc1ccccc1C(=O)O", "CCO", "OC1CC1OC1COC1"):
        m = mol(s)
        assert M.drug_likeness(m) == pytest.approx(M.qed(m) * (10 - M.sa_score(m)) / 9)


@pytest.mark.parametrize("name", ["qed", "sa", "drug_likeness", "validity"])
def test_rewards_score_garbage_zero_count_it_and_never_raise(name):
    reward = M.reward_fn(name)
    batch = ["CCO", *GARBAGE, "c1ccccc1"]
    out = reward(batch, [()] * len(batch))
    assert out.dtype == np.float32 and out.shape == (len(batch),)
    assert (out[1:-1] == 0).all() and (out[[0, -1]] > 0).all() and (out <= 1).all()
    assert reward(["CCO"], None)[0] == out[0]
    assert M.score(batch, name).n_invalid == len(GARBAGE)


def test_unknown_reward_names_the_allowed_ones():
    with pytest.raises(ValueError, match="'logp' is not one of qed, sa, drug_likeness, validity"):
        M.reward_fn("logp")


def _tanimoto(a, b, n_bits=1024):
    gen = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=n_bits)
    x, y = (set(gen.GetFingerprint(mol(s)).GetOnBits()) for s in (a, b))
    return len(x & y) / len(x | y)


def test_internal_diversity_against_hand_computed_tanimoto():
    assert M.internal_diversity(["CCO", "OCC", "CCO"]) == pytest.approx(0.0)
    t = _tanimoto("CCO", "CCN")
    assert 0 < t < 1
    # 1 - (1/4)(1 + 1 + t + t): MOSES averages over all ordered pairs, self-pairs included
    assert M.internal_diversity(["CCO", "CCN", "xyz"]) == pytest.approx((1 - t) / 2)
    three = ["CCO", "CCN", "c1ccccc1"]
    pairs = [_tanimoto(a, b) for a in three for b in three]
    assert M.internal_diversity(three) == pytest.approx(1 - np.mean(pairs))
    t2048 = _tanimoto("CCO", "CCN", 2048)
    assert M.internal_diversity(["CCO", "CCN"], n_bits=2048) == pytest.approx((1 - t2048) / 2)
    assert math.isnan(M.internal_diversity(["xyz"]))


def test_frechet_distance_closed_forms():
    # commuting (diagonal) covariances: ||dmu||^2 + sum (sqrt(s_a) - sqrt(s_b))^2
    a = M.FCDStats(np.zeros(2), np.diag([1.0, 4.0]), 10)
    b = M.FCDStats(np.array([1.0, 2.0]), np.diag([4.0, 9.0]), 10)
    assert M.frechet_distance(a, b) == pytest.approx(5 + 1 + 1)
    # non-commuting ones against scipy's general matrix square root
    from scipy import linalg

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(2, 6, 6))
    a, b = M.FCDStats(np.zeros(6), x @ x.T, 10), M.FCDStats(np.ones(6), y @ y.T, 10)
    want = 6 + np.trace(a.sigma + b.sigma - 2 * linalg.sqrtm(a.sigma @ b.sigma).real)
    assert M.frechet_distance(a, b) == pytest.approx(want, rel=1e-9)
    assert M.frechet_distance(a, a) == pytest.approx(0, abs=1e-9)


def _zinc(n):
    path = os.path.join(RDConfig.RDContribDir, "SA_Score", "data", "zim.100.txt")
    return [line.split("\t")[0] for line in open(path).read().splitlines()[1 : n + 1]]


def test_fcd_self_zero_other_positive_invalid_left_out(tmp_path):
    pytest.importorskip("fcd_torch")
    drugs = _zinc(100)
    a, b = drugs[:50], drugs[50:]
    chains = [f"{'C' * k}{end}" for k in range(1, 26) for end in ("", "O")]  # 50 aliphatics
    ref = M.fcd_reference_stats(a)
    assert ref.mu.shape == (512,) and ref.sigma.shape == (512, 512) and ref.n == 50
    with_invalid = M.fcd_reference_stats([*a, "xyz", "", "C1CC"])
    assert with_invalid.n == 50 and np.allclose(with_invalid.sigma, ref.sigma)
    # 0 up to rounding: with 50 < 512 molecules the covariance has ~460 zero eigenvalues,
    # whose ~1e-15 noise the square root lifts to ~1e-8 each (Tr sigma is ~33 here)
    assert M.frechet_distance(ref, ref) == pytest.approx(0, abs=1e-4)
    ref.save(tmp_path / "ref.npz")
    near = M.fcd_from_stats(b, M.FCDStats.load(tmp_path / "ref.npz"))
    far = M.fcd(chains, a)
    assert 0 < near < far  # other drug-like molecules are closer than alkanes and alcohols
    assert math.isnan(M.fcd_from_stats(["CCO", "xyz"], ref))


def test_fcd_is_fcd_torch_and_keeps_its_earlier_values():
    fcd_torch = pytest.importorskip("fcd_torch")
    drugs = _zinc(100)
    a, b = drugs[:50], drugs[50:]
    chains = [f"{'C' * k}{end}" for k in range(1, 26) for end in ("", "O")]
    direct = fcd_torch.FCD(device="cpu", n_jobs=1)  # all valid: fcd-torch would raise if not
    for gen in (b, chains):
        assert M.fcd(gen, a) == pytest.approx(float(direct(gen=gen, ref=a)), rel=1e-12)
    # what the module gave before it called fcd-torch (its own ChemNet batching, float64
    # means and an eigh square root): the switch moved them by < 1e-7 relative
    assert M.fcd(b, a) == pytest.approx(27.053528914277905, rel=1e-6)
    assert M.fcd(chains, a) == pytest.approx(54.08529132993729, rel=1e-6)
    assert M.fcd([*b, "xyz", "", None], a) == M.fcd(b, a)  # invalid samples left out


def test_summary_on_a_small_batch():
    smiles = ["CCO", "OCC", "c1ccccc1", "C1CC", "", "CCN"]
    out = M.summary(smiles, {"CCO"}, reward="qed")
    assert out["validity"] == 4 / 6 and out["uniqueness"] == 3 / 4
    assert out["novelty"] == 2 / 3 and (out["n_invalid"], out["n"]) == (2, 6)
    q = [M.qed(mol(s)) for s in ("CCO", "CCO", "c1ccccc1", "CCN")]
    assert out["qed_mean"] == pytest.approx(np.mean(q))
    assert out["reward_mean"] == pytest.approx(sum(q) / 6, rel=1e-6)  # invalid count as 0
    sa = [M.sa_score(mol(s)) for s in ("CCO", "CCO", "c1ccccc1", "CCN")]
    assert out["sa_mean"] == pytest.approx(np.mean(sa))
    assert out["intdiv"] == pytest.approx(M.internal_diversity(smiles))
    empty = M.summary(GARBAGE, set())
    assert empty["validity"] == 0 and empty["n_invalid"] == len(GARBAGE)
    assert empty["reward_mean"] == 0 and math.isnan(empty["qed_mean"])
