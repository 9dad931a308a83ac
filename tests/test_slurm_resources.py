"""benchmarks/slurm_resources.py: each benchmark file is traced to its rule (the workflow's
and the rules' own wildcard constraints), requests follow the documented formula, and
--update replaces only a profile's set-resources block."""

from __future__ import annotations

import sys

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
import slurm_resources  # noqa: E402

TSV = "s\th:m:s\tmax_rss\tmax_vms\n{s}\t0:00:00\t{rss}\t0\n"


def test_every_benchmark_directive_gets_one_pattern():
    patterns = slurm_resources.benchmark_patterns()
    directives = sum(p.read_text().count("benchmark:") for p in (ROOT / "rules").glob("*.smk"))
    assert len(patterns) == directives == len({rule for rule, _ in patterns})


def test_benchmark_files_are_traced_to_their_rule(tmp_path):
    files = {
        "unconditional/benchmarks/evaluate_base_euler4_seed0.tsv": "unconditional_evaluate",
        "unconditional/benchmarks/evaluate_inc_euler4_c2_seed1.tsv": "unconditional_evaluate",
        "unconditional/benchmarks/evaluate_real.tsv": "unconditional_real_floor",
        "unconditional/benchmarks/features.tsv": "unconditional_features",
        "layout/benchmarks/features.tsv": "finetune_features",
        "t2i/benchmarks/graft_seed1.tsv": "finetune_run",
        "molecule/benchmarks/pgraft4_seed0.tsv": "finetune_run",
        "t2i/benchmarks/best_of_m_seed0.tsv": "finetune_best_of_m",
        "t2i/benchmarks/base_seed0.tsv": "finetune_base",
        "toy2d/benchmarks/inc_table.tsv": "toy2d_inc_table",
    }
    for i, name in enumerate([*files, "t2i/benchmarks/mystery.tsv"]):
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(TSV.format(s=10 + i, rss=100 * i))
    measured, unknown = slurm_resources.measure(tmp_path, slurm_resources.benchmark_patterns())
    assert unknown == ["t2i/benchmarks/mystery.tsv"]
    assert dict(zip(measured["file"], measured["rule"], strict=True)) == files


def test_requests_follow_the_formula_and_update_replaces_the_block(tmp_path):
    import pandas as pd

    measured = pd.DataFrame(
        {"rule": ["a", "a", "b"], "file": ["1", "2", "3"], "s": [30.0, 100.0, 5.0]}
        | {"max_rss": [1000.0, 400.0, 10.0]}
    )
    per_rule = slurm_resources.requests(measured)
    # a: ceil((2 x 100 + 60) / 60) = 5 min, 1.5 x 1000 + 1000 = 2500 MB; b: the floors
    assert per_rule.loc["a", ["runtime", "mem_mb", "jobs"]].tolist() == [5, 2500, 2]
    assert per_rule.loc["b", ["runtime", "mem_mb"]].tolist() == [2, 1100]
    profile = tmp_path / "config.yaml"
    profile.write_text(
        "jobs: 2\n# note\nset-resources:\n  old: {mem_mb: 1, runtime: 1}\nretries: 0\n"
    )
    block = slurm_resources.block(per_rule, "results/smoke")
    for _ in range(2):  # a second update replaces the first, marker comment included
        slurm_resources.update(profile, block)
        assert profile.read_text() == "jobs: 2\n# note\n" + block + "retries: 0\n"
    assert "  a: {mem_mb: 2500, runtime: 5}  # 2 job(s), max 100 s, 1000 MB" in block


def test_a_folder_without_benchmarks_is_refused(capsys, tmp_path):
    assert slurm_resources.main([str(tmp_path / "nowhere")]) == 1
    assert "no */benchmarks/*.tsv" in capsys.readouterr().err


def test_the_smoke_tables_are_kept_for_this_tree_only(tmp_path):
    """make test keeps its smoke run's tables under the tree's digest; make test-cluster
    finds them for the same tree, and nothing for another (tests/conftest.py)."""
    from tests import conftest

    wf = tmp_path / "wf"
    (wf / "results/smoke/tables").mkdir(parents=True)
    (wf / "results/smoke/tables/toy2d.csv").write_text("a,b\n1,2\n")
    kept = tmp_path / "kept"
    assert conftest.kept_smoke_run(kept) is None
    conftest.keep_smoke_tables(wf, kept)
    found = conftest.kept_smoke_run(kept)
    assert (found / "results/smoke/tables/toy2d.csv").read_text() == "a,b\n1,2\n"
    (kept / conftest.tree_digest()).rename(kept / "0123456789abcdef")  # another tree's
    assert conftest.kept_smoke_run(kept) is None
