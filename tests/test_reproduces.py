"""The "what reproduces" table: verdicts from CIs, readings from tables, the generated blocks
of README.md and BENCHMARKS.md (graftbench/reproduces.py, graftbench/summary.py)."""

import math

import pandas as pd
import pytest

from graftbench import reproduces as R
from graftbench import summary as S
from graftbench.__main__ import main
from graftbench.config import InputError

NAN = float("nan")


@pytest.mark.parametrize(
    "mean, ci, direction, word",
    [
        (3.0, 1.0, +1, "yes"),
        (-3.0, 1.0, +1, "no"),
        (0.5, 1.0, +1, "unclear"),
        (-3.0, 1.0, -1, "yes"),
        (3.0, 1.0, -1, "no"),
        (0.5, 1.0, 0, "yes"),
        (3.0, 1.0, 0, "no"),
        (3.0, NAN, +1, "unclear"),  # one seed: no CI, no verdict
    ],
)
def test_a_verdict_reads_the_ci_against_zero(mean, ci, direction, word):
    assert R.verdict_of(R.Reading("x", mean, ci), direction) == word


def test_several_readings_give_one_word():
    def r(mean):
        return R.Reading("x", mean, 1.0)

    assert R.verdict([r(3), r(4)], +1) == "yes"
    assert R.verdict([r(3), r(0)], +1) == "partly"
    assert R.verdict([r(-3), r(0)], +1) == "no"
    assert R.verdict([r(0), r(0.5)], +1) == "unclear"
    assert R.verdict([], +1) == "not run"


def finetune_table(rows: dict[str, tuple[float, float]], seeds="0 1 2") -> pd.DataFrame:
    """A fine-tuning table as the workflow writes it: run -> (improvement_pct mean, CI)."""
    return pd.DataFrame(
        [
            {
                "run": run,
                "n_seeds": 3,
                "seeds": seeds,
                "improvement_pct_mean": 0.0 if run == "base" else m,
                "improvement_pct_ci95": ci,
                "reward_queries_mean": 0 if run in ("base", "best_of_m") else 256,
            }
            for run, (m, ci) in rows.items()
        ]
    )


TABLES = {
    "t2i": finetune_table(
        {"base": (0, 0), "graft": (1, 1), "pgraft6": (4, 1), "pgraft3": (-2, 1), "ddpo": (1, 2)}
    ),
    "inc": pd.DataFrame(
        {
            "method": ["base", "base", "base", "inc"],
            "steps": [4, 8, 16, 8],
            "corrector_steps": [0, 0, 0, 8],
            "n_seeds": 3,
            "seeds": "0 1 2",
            "flops_per_image_mean": [4e8, 8e8, 16e8, 9e8],
            "fid.trained-cnn_mean": [30.0, 20.0, 10.0, 15.0],
            "fid.trained-cnn_ci95": [1.0, 1.0, 1.0, 2.0],
        }
    ),
}


def test_p_graft_rows_are_read_in_n_i_order_with_their_paired_cis():
    readings = R.improvement("pgraft", "t2i")(TABLES)
    assert [(r.label, r.mean, r.ci) for r in readings] == [("pgraft3", -2, 1), ("pgraft6", 4, 1)]


def test_a_difference_of_two_rows_adds_their_cis_in_quadrature():
    readings = R.improvement_over("pgraft", "ddpo", "t2i")(TABLES)
    assert [r.mean for r in readings] == [-3, 3]
    assert readings[0].ci == pytest.approx(math.hypot(1, 2))


def test_inc_is_compared_at_equal_steps_and_with_the_cheapest_costlier_base():
    same = R.inc_against_base("steps")(TABLES)
    assert [(r.label, r.mean) for r in same] == [("trained-cnn 8+8 vs 8", -5.0)]
    flops = R.inc_against_base("flops")(TABLES)  # 9e8 FLOPs: the 16-step base (16e8) is next
    assert [(r.label, r.mean) for r in flops] == [("trained-cnn 8+8 vs 16", 5.0)]
    assert flops[0].ci == pytest.approx(math.hypot(2, 1))


def test_the_table_has_one_row_per_claim_whose_table_exists():
    text = R.reproduces_table(TABLES, "cpu")
    rows = text.strip().splitlines()[2:]
    expected = [c for c in R.CLAIMS if c.table in TABLES]
    assert len(rows) == len(expected) == 4
    p_graft = rows[0].split(" | ")
    assert p_graft[2] == "t2i" and "pgraft3 -2.00 ± 1.00%; pgraft6 +4.00 ± 1.00%" in p_graft[3]
    assert p_graft[4] == "cpu: 256 reward queries, seeds 0, 1, 2" and p_graft[5] == "partly |"
    assert rows[1].endswith("| partly |")  # pgraft6 - ddpo = +3 ± 2.2: yes; pgraft3: no
    assert rows[2].split(" | ")[2] == "unconditional" and rows[2].endswith("| yes |")
    assert rows[3].endswith("| no |")  # 15 ± 2 against the 16-step base's 10 ± 1


def test_update_rewrites_the_generated_blocks_and_refuses_a_file_without_one(tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_text("a\n<!-- summary:reproduces -->\nold\n<!-- /summary:reproduces -->\nb\n")
    assert S.update_blocks(doc, {"reproduces": "new\n", "results": "x\n"}) == ["reproduces"]
    assert (
        doc.read_text() == "a\n<!-- summary:reproduces -->\nnew\n<!-- /summary:reproduces -->\nb\n"
    )
    (tmp_path / "none.md").write_text("no blocks\n")
    with pytest.raises(InputError, match="no <!-- summary:NAME --> block"):
        S.update_blocks(tmp_path / "none.md", {"reproduces": ""})


def test_the_verb_writes_the_table_the_figure_and_the_blocks(tmp_path, capsys):
    tables = tmp_path / "results/cpu/tables"
    tables.mkdir(parents=True)
    for name, table in TABLES.items():
        table.to_csv(tables / f"{name}.csv", index=False)
    jobs = {"task": ["t2i", "t2i", "unconditional"], "job": ["a", "b", "c"], "s": [60, 120, 30]}
    pd.DataFrame(jobs).to_csv(tables / "benchmarks.csv", index=False)
    doc = tmp_path / "doc.md"
    doc.write_text("<!-- summary:results -->\n<!-- /summary:results -->\n")
    args = ["summary", "--results", str(tmp_path / "results"), "--profile", "cpu"]
    out = ["--out", str(tmp_path / "r.md"), "--figure", str(tmp_path / "h.png")]
    assert main([*args, *out, "--update", str(doc)]) == 0
    assert capsys.readouterr().out.strip() == R.reproduces_table(TABLES, "cpu").strip()
    assert (tmp_path / "h.png").read_bytes()[:4] == b"\x89PNG"
    assert "| pgraft6 |" in doc.read_text() and "(results/cpu/tables/inc.md)" in doc.read_text()
    assert "| t2i | 2 | 3.0 | 2.0 |" in doc.read_text()  # jobs, job-minutes, longest job
    assert "| all | 3 | 3.5 | 2.0 |" in doc.read_text()
    # no tables: one line, exit 2
    assert main(["summary", "--tables", str(tmp_path / "empty")]) == 2
