"""GRAFT's acceptance rules: which of the M samples drawn for a condition are kept.

Each rule maps rewards (groups, M) -> a boolean mask (groups, M). With F the CDF of the
reward under the sampling model p and the samples i.i.d., the accepted samples follow
(DESIGN.md; the GRAFT paper's reshaped-reward lemma):
  - top-K of M:  p_acc(x) = p(x) * (M/K) * sum_{j<K} C(M-1, j) (1-F)^j F^(M-1-j)
  - best-of-M:   top-K with K = 1, p_acc(x) = p(x) * M * F^(M-1)
  - threshold:   p_acc(x) = p(x) * 1[r >= tau] / P(r >= tau)
  - RSO-style:   accept with probability exp((r - r_max) / beta), so p_acc ∝ p(x) exp(r / beta)
                 when r_max bounds the reward (Liu et al. 2024, "Statistical rejection sampling").
  - all:         every sample (K = M): p_acc = p, no selection; the `self_fit` reference run,
                 whose change is the drift of fitting the model's own samples alone.
De-duplication (optional, before any rule) keeps the first of identical samples in a group;
the paper stresses it for molecules, where a model collapsing onto one SMILES would otherwise
fill the accepted set with copies.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from graftbench.config import Count, Positive


@dataclass
class SelectionConfig:
    rule: Literal["top_k", "best_of_n", "threshold", "rso", "all"] = "top_k"  # acceptance
    # rule (all: keep every sample, the self_fit reference)
    k: Count = 1  # samples kept per condition by top_k
    tau: float = 0.5  # reward threshold of the threshold rule
    beta: Positive = 0.1  # temperature of the RSO rule
    r_max: float | None = None  # RSO's reward bound; None uses each group's maximum
    dedup: bool = False  # drop identical samples within a group before selecting


def select(
    rewards: torch.Tensor,
    cfg: SelectionConfig,
    generator: torch.Generator | None = None,
    keys: Sequence[Sequence[object]] | None = None,
) -> torch.Tensor:
    """Boolean mask (groups, M) of accepted samples.

    rewards: (groups, M), the M samples of each condition. keys: per group, one hashable
    identity per sample (e.g. canonical SMILES), needed when cfg.dedup is set. Ties in top-K
    go to the earlier sample, so the rule is deterministic given the rewards.
    """
    if rewards.dim() != 2:
        raise ValueError(f"rewards: expected (groups, M), got shape {tuple(rewards.shape)}")
    valid = torch.isfinite(rewards)
    if cfg.dedup:
        if keys is None:
            raise ValueError("selection.dedup needs a key per sample (e.g. canonical SMILES)")
        valid &= first_occurrence(keys, rewards.device)
    r = rewards.masked_fill(~valid, float("-inf"))
    if cfg.rule in ("top_k", "best_of_n"):
        k = 1 if cfg.rule == "best_of_n" else cfg.k
        if not 1 <= k <= rewards.shape[1]:
            raise ValueError(f"selection.k: {k} must lie in 1..M={rewards.shape[1]}")
        # stable descending sort: ties keep their original order
        order = torch.sort(r, dim=1, descending=True, stable=True).indices[:, :k]
        mask = torch.zeros_like(valid).scatter_(1, order, True)
        return mask & valid
    if cfg.rule == "threshold":
        return valid & (r >= cfg.tau)
    if cfg.rule == "all":
        return valid
    if cfg.rule == "rso":
        r_max = r.max(1, keepdim=True).values if cfg.r_max is None else cfg.r_max
        p = torch.exp((r - r_max) / cfg.beta).clamp(max=1.0)
        u = torch.rand(r.shape, generator=generator, device=r.device)
        return valid & (u < p)
    raise ValueError(f"selection.rule: {cfg.rule!r} is not allowed")


def first_occurrence(keys: Sequence[Sequence[object]], device=None) -> torch.Tensor:
    """(groups, M) mask, True where a sample's key did not occur earlier in its group."""
    rows = []
    for group in keys:
        seen: set = set()
        row = []
        for key in group:
            row.append(key not in seen)
            seen.add(key)
        rows.append(row)
    return torch.tensor(rows, dtype=torch.bool, device=device)


def acceptance_weight(f: torch.Tensor, rewards: torch.Tensor, cfg: SelectionConfig, m: int):
    """p_acc(x) / p(x) of a rule (the module's formulas) at points with rewards `rewards` whose
    CDF values under the sampling law are `f` (both (n,)); m: the group size M. Unnormalised
    for threshold and RSO (their constants need the whole law: `target_weights`). RSO with a
    per-group maximum (r_max None) has no closed form and is refused."""
    from scipy.stats import binom

    if cfg.rule in ("top_k", "best_of_n"):
        k = 1 if cfg.rule == "best_of_n" else cfg.k
        # P(accepted | r) = P(fewer than k of the other m - 1 beat r) = BinomCDF(k-1; m-1, 1-F)
        return (m / k) * torch.from_numpy(binom.cdf(k - 1, m - 1, (1 - f.double()).numpy()))
    if cfg.rule == "threshold":
        return (rewards >= cfg.tau).double()
    if cfg.rule == "all":
        return torch.ones_like(f, dtype=torch.float64)
    if cfg.rule == "rso" and cfg.r_max is not None:
        return torch.exp((rewards.double() - cfg.r_max) / cfg.beta).clamp(max=1.0)
    raise ValueError(f"selection.rule: {cfg.rule!r} (r_max None) has no closed-form target")


def target_weights(rewards: torch.Tensor, cfg: SelectionConfig, m: int) -> torch.Tensor:
    """`acceptance_weight` at each of a large sample of the sampling law's rewards (n,), with
    F its empirical CDF (ranks; continuous rewards have no ties) and the weights normalised to mean 1: reweighting the
    sample by them is a sample of the rule's exact accepted law. De-duplication is ignored."""
    r = rewards.double().cpu()
    f = (torch.argsort(torch.argsort(r)).double() + 0.5) / len(r)
    w = acceptance_weight(f, r, cfg, m)
    if w.sum() == 0:
        raise ValueError(f"selection: the {cfg.rule} rule accepts none of the samples")
    return w / w.mean()
