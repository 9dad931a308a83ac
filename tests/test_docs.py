"""README.md, BENCHMARKS.md and docs/: every link and repository path they name exists, the
README leads with what a new reader needs, and every generated number agrees with the tables
checked in under docs/results/cpu (`make docs` regenerates them after `make run`)."""

import glob
import re
from pathlib import Path

import pytest

from graftbench import summary

ROOT = Path(__file__).resolve().parents[1]
CPU_TABLES = ROOT / "docs/results/cpu/tables"
# the written pages; docs/results/ holds the workflow's own tables, not prose
PAGES = [
    ROOT / "README.md",
    ROOT / "BENCHMARKS.md",
    *sorted(p for p in (ROOT / "docs").rglob("*.md") if "results" not in p.parts),
]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")  # [text](target) and ![alt](image)
CODE = re.compile(r"`([^`\s]+)`")
# a backticked token is a repository path when it starts with one of these; results/ (outputs),
# data/ (files users supply) and .venv/ are made by runs, not kept in git
TOP = {p.name for p in ROOT.iterdir() if not p.name.startswith(".")} - {"results", "data"}


def expand_braces(path: str) -> list[str]:
    """`a/{b,c}.py` -> [a/b.py, a/c.py] (one brace group, as the pages write them)."""
    m = re.search(r"\{([^{}]*,[^{}]*)\}", path)
    if not m:
        return [path]
    return [path[: m.start()] + part + path[m.end() :] for part in m.group(1).split(",")]


def named_paths(page: Path) -> list[tuple[str, Path]]:
    """(as written, where it points) for every relative link and backticked repository path."""
    text = page.read_text()
    out = []
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue  # a web address or an anchor in the same page
        out.append((target, page.parent / target.split("#")[0]))
    for token in CODE.findall(text):
        token = re.sub(r":\d+$", "", token.rstrip(".,;:)"))  # file.py:120 -> file.py
        head = token.split("/")[0]
        if head not in TOP or "/" not in token and not (ROOT / token).is_file():
            continue
        if any(c in token for c in "<>$") or re.search(r"\{[^{},]*\}", token):
            continue  # a placeholder: {profile}, <task>, $OUT
        out += [(token, ROOT / p) for p in expand_braces(token)]
    return out


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_link_and_path_exists(page):
    missing = [
        written
        for written, path in named_paths(page)
        if not (glob.glob(str(path)) if "*" in str(path) else path.exists())
    ]
    assert not missing, f"{page.relative_to(ROOT)} names paths that do not exist: {missing}"


def test_the_link_check_sees_a_missing_file(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("[gone](nowhere.md) and `graftbench/nowhere.py`, `results/{profile}/x`\n")
    found = [written for written, _ in named_paths(page)]
    assert found == ["nowhere.md", "graftbench/nowhere.py"]


def block(text: str, name: str) -> str:
    m = re.search(rf"<!-- summary:{name} -->\n(.*?)<!-- /summary:{name} -->", text, re.S)
    assert m, f"no generated block {name}"
    return m.group(1)


def test_the_readme_opens_with_the_commands_the_figure_and_what_reproduces():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert lines[:4] == [
        "```bash",
        "make run    # set up .venv, then run the main job: the whole workflow on the cpu profile",
        "make test   # set up .venv, then run the tests (maths, verbs, smoke workflow, lint)",
        "```",
    ]
    first_screen = "\n".join(lines[:40])
    assert "![" in first_screen and "docs/results/cpu/figures/headline.png" in first_screen
    assert "<!-- summary:reproduces -->" in first_screen
    assert len(lines) <= 150


@pytest.mark.parametrize("name, page", [("reproduces", "README.md"), ("results", "BENCHMARKS.md")])
def test_generated_numbers_agree_with_the_checked_in_tables(name, page):
    """The README's "what reproduces" table and BENCHMARKS.md's current results are what
    `graftbench summary` makes from docs/results/cpu; after `make run`, `make docs` refreshes
    both."""
    expected = summary.blocks(CPU_TABLES, "cpu", ROOT)[name]
    assert block((ROOT / page).read_text(), name) == expected, "run `make docs`"


def readme_claims() -> list[list[str]]:
    """The README table's claim, paper and task cells, and its header's."""
    table = block((ROOT / "README.md").read_text(), "reproduces").splitlines()
    return [row.split(" | ")[:3] for row in [table[0], *table[2:]]]


@pytest.mark.workflow
def test_summary_of_a_profile_has_the_readme_table_format(smoke_run):
    """`graftbench summary` on the smoke run prints the README's table: the same header and
    the same claims, tasks and paper numbers (the readings differ: smoke sizes, one seed)."""
    import subprocess
    import sys

    results = smoke_run / "results"
    cmd = [sys.executable, "-m", "graftbench", "summary", "--results", str(results)]
    out = subprocess.run([*cmd, "--profile", "smoke"], capture_output=True, text=True, check=True)
    rows = out.stdout.strip().splitlines()
    assert [row.split(" | ")[:3] for row in [rows[0], *rows[2:]]] == readme_claims()
    assert (results / "smoke/figures/headline.png").exists()
