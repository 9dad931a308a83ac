"""The reward-against-queries curve is the paired change from the base of the same seed:
seeds with very different base levels but the same change give that change exactly, and
best_of_m (no fine-tuning rounds, no rounds.jsonl) is a dotted reference line, not a curve."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from graftbench import records
from graftbench.finetuning import tables

# dyadic numbers, so every sum and difference below is exact in floating point
BASE = {0: 0.25, 1: 0.75}  # very different base levels per seed
CHANGE = {100: 0.125, 200: 0.25}  # the same paired change at both seeds


def fake_task(tmp_path, best_of_m: dict | None = None):
    """A task folder with base and graft at seeds 0 and 1 (graft with a rounds.jsonl), and
    optionally best_of_m rows (curve_reward per seed) without any rounds.jsonl."""
    rows = [
        {"run": "base", "seed": s, "curve_reward": b, "method": "base"} for s, b in BASE.items()
    ]
    for seed, base in BASE.items():
        points = [{"reward_queries": q, "curve_reward": base + c} for q, c in CHANGE.items()]
        for point in points:
            records.append_jsonl(tmp_path / "graft" / f"seed{seed}" / "rounds.jsonl", point)
        last = points[-1]["curve_reward"]
        rows.append({"run": "graft", "seed": seed, "curve_reward": last, "method": "graft"})
    for seed, reward in (best_of_m or {}).items():
        rows.append({"run": "best_of_m", "seed": seed, "curve_reward": reward, "method": "-"})
        (tmp_path / "best_of_m" / f"seed{seed}").mkdir(parents=True, exist_ok=True)
    return pd.DataFrame(rows)


def plotted(monkeypatch, tmp_path, runs, path, *args, **kwargs):
    """Call plot_reward_vs_queries, keeping what its axes show before the figure is saved."""
    seen = {}
    save = tables.save

    def keep(fig, out, rect=None):
        ax = fig.axes[0]
        seen["lines"] = {line.get_label(): line for line in ax.get_lines()}
        seen["ylabel"], seen["title"] = ax.get_ylabel(), ax.get_title()
        save(fig, out, rect)

    monkeypatch.setattr(tables, "save", keep)
    tables.plot_reward_vs_queries(tmp_path, runs, path, *args, **kwargs)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return seen


def test_change_is_the_paired_difference_from_the_base(tmp_path, monkeypatch):
    runs = fake_task(tmp_path)
    data = tables.curves(tmp_path, runs).sort_values(["seed", "reward_queries"])
    assert list(data["run"].unique()) == ["graft"]
    assert data["seed"].tolist() == [0, 0, 0, 1, 1, 1]
    assert data["reward_queries"].tolist() == [0, 100, 200] * 2
    # the base's own score at 0 queries, then the fine-tuned points
    assert data["curve_reward"].tolist() == [0.25, 0.375, 0.5, 0.75, 0.875, 1.0]
    assert data["change"].tolist() == [0.0, 0.125, 0.25] * 2  # exactly, at both seeds

    seen = plotted(monkeypatch, tmp_path, runs, tmp_path / "fig.png", "held-out score")
    assert seen["ylabel"] == "held-out score:\nchange from the base (same seed)"
    assert seen["title"].endswith("(mean, 95% CI over seeds of the paired change)")
    base = seen["lines"]["base"]
    assert base.get_color() == "black" and base.get_linestyle() == "--"
    assert list(base.get_ydata()) == [0.0, 0.0]
    graft = seen["lines"]["graft"]
    assert list(graft.get_xdata()) == [0, 100, 200]
    assert list(graft.get_ydata()) == [0.0, 0.125, 0.25]  # not the absolute 0.5, 0.625, 0.75
    assert "best_of_m (no fine-tuning)" not in seen["lines"]


def test_best_of_m_without_rounds_is_a_dotted_reference_line(tmp_path, monkeypatch):
    runs = fake_task(tmp_path, best_of_m={0: 0.25 + 0.0625, 1: 0.75 + 0.1875})
    data = tables.curves(tmp_path, runs)
    assert set(data["run"]) == {"graft"}  # best_of_m has no rounds.jsonl: left out
    assert not (tmp_path / "best_of_m" / "seed0" / "rounds.jsonl").exists()

    path = tmp_path / "figures" / "t2i_reward_vs_queries.png"
    seen = plotted(monkeypatch, tmp_path, runs, path, "score", title="Reward during tuning")
    line = seen["lines"]["best_of_m (no fine-tuning)"]
    assert line.get_linestyle() == ":"
    assert list(line.get_ydata()) == [0.125, 0.125]  # mean of 0.0625 and 0.1875
    assert seen["title"] == "Reward during tuning\n(mean, 95% CI over seeds of the paired change)"
    assert "best_of_m" not in seen["lines"]  # a reference line, not a curve


def test_best_of_m_without_a_curve_reward_draws_nothing(tmp_path, monkeypatch):
    runs = fake_task(tmp_path, best_of_m={0: np.nan, 1: np.nan})
    seen = plotted(monkeypatch, tmp_path, runs, tmp_path / "fig.png")
    assert "best_of_m (no fine-tuning)" not in seen["lines"]
    assert set(seen["lines"]) == {"base", "graft"}


def test_change_at_a_seed_without_a_base_is_nan(tmp_path):
    runs = fake_task(tmp_path)
    runs = runs[~((runs["run"] == "base") & (runs["seed"] == 1))]
    data = tables.curves(tmp_path, runs)
    assert all(math.isnan(c) for c in data.loc[data["seed"] == 1, "change"])
    assert data.loc[data["seed"] == 0, "change"].tolist() == [0.0, 0.125, 0.25]
