"""GRAFT acceptance rules against their closed-form laws (DESIGN.md), on rewards whose
law under the sampler is known: r ~ Uniform(0, 1), so F(r) = r."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from graftbench.methods.selection import SelectionConfig, first_occurrence, select

GROUPS = 20000


def accepted(rule: SelectionConfig, m: int, seed: int = 0) -> np.ndarray:
    g = torch.Generator().manual_seed(seed)
    r = torch.rand(GROUPS, m, generator=g)
    mask = select(r, rule, generator=g)
    return r[mask].numpy()


def top_k_cdf(x: np.ndarray, m: int, k: int) -> np.ndarray:
    """CDF of an accepted reward under top-K of M, integrating the DESIGN.md density
    (M/K) sum_{j<K} C(M-1, j) (1-F)^j F^(M-1-j) dF numerically (F = x on [0, 1])."""
    grid = np.linspace(0, 1, 20001)
    dens = (
        sum(math.comb(m - 1, j) * (1 - grid) ** j * grid ** (m - 1 - j) for j in range(k)) * m / k
    )
    cdf = np.concatenate([[0], np.cumsum((dens[1:] + dens[:-1]) / 2 * np.diff(grid))])
    return np.interp(x, grid, cdf)


@pytest.mark.parametrize("m", [2, 4, 8])
def test_best_of_m_accepts_with_cdf_f_to_the_m(m):
    acc = accepted(SelectionConfig(rule="best_of_n"), m)
    assert len(acc) == GROUPS
    assert stats.kstest(acc, lambda x: np.clip(x, 0, 1) ** m).pvalue > 1e-3
    # and not the law of a different M
    assert stats.kstest(acc, lambda x: np.clip(x, 0, 1) ** (m + 1)).pvalue < 1e-6


@pytest.mark.parametrize("m, k", [(4, 2), (8, 3), (6, 6)])
def test_top_k_matches_order_statistics_formula(m, k):
    acc = accepted(SelectionConfig(rule="top_k", k=k), m)
    assert len(acc) == GROUPS * k
    assert stats.kstest(acc, lambda x: top_k_cdf(x, m, k)).pvalue > 1e-3
    if k == m:  # keeping everything leaves the law of p: uniform
        assert stats.kstest(acc, "uniform").pvalue > 1e-3


def test_threshold_is_the_truncated_law():
    acc = accepted(SelectionConfig(rule="threshold", tau=0.7), 4)
    assert acc.min() >= 0.7
    assert stats.kstest(acc, stats.uniform(0.7, 0.3).cdf).pvalue > 1e-3
    assert len(acc) / (GROUPS * 4) == pytest.approx(0.3, abs=0.01)


@pytest.mark.parametrize("beta", [0.2, 0.5])
def test_rso_tilts_by_exp_r_over_beta(beta):
    acc = accepted(SelectionConfig(rule="rso", beta=beta, r_max=1.0), 4)

    def cdf(x):  # density ∝ exp(r / beta) on [0, 1]
        x = np.clip(x, 0, 1)
        return np.expm1(x / beta) / np.expm1(1 / beta)

    assert stats.kstest(acc, cdf).pvalue > 1e-3
    # acceptance rate: E[exp((r - 1)/beta)] = beta (1 - exp(-1/beta))
    assert len(acc) / (GROUPS * 4) == pytest.approx(beta * -np.expm1(-1 / beta), rel=0.02)


def test_top_k_ties_and_invalid_rewards():
    r = torch.tensor([[1.0, 1.0, 0.5, float("nan")], [float("nan")] * 2 + [0.1, 0.2]])
    mask = select(r, SelectionConfig(rule="top_k", k=1))
    assert mask.tolist() == [[True, False, False, False], [False, False, False, True]]
    # a NaN reward (e.g. an invalid molecule that was not scored) is never accepted
    mask = select(r, SelectionConfig(rule="top_k", k=4))
    assert mask.tolist() == [[True, True, True, False], [False, False, True, True]]


def test_dedup_keeps_one_copy_before_selecting():
    keys = [["CCO", "CCO", "CCN", "CCO"]]
    assert first_occurrence(keys).tolist() == [[True, False, True, False]]
    r = torch.tensor([[0.9, 0.9, 0.1, 0.9]])
    plain = select(r, SelectionConfig(rule="top_k", k=2))
    dedup = select(r, SelectionConfig(rule="top_k", k=2, dedup=True), keys=keys)
    assert plain.tolist() == [[True, True, False, False]]  # two copies of CCO
    assert dedup.tolist() == [[True, False, True, False]]  # CCO once, then CCN
    with pytest.raises(ValueError, match="dedup needs a key"):
        select(r, SelectionConfig(rule="top_k", dedup=True))


def test_bad_k_names_the_key():
    with pytest.raises(ValueError, match=r"selection.k: 5 must lie in 1..M=4"):
        select(torch.rand(2, 4), SelectionConfig(rule="top_k", k=5))
