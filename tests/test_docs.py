"""README.md, BENCHMARKS.md and docs/: every link and repository path they name exists, the
README leads with what a new reader needs, and every generated number agrees with the tables
checked in under docs/results/cpu (`make docs` regenerates them after `make run`)."""

import re
from pathlib import Path

import pytest

from graftbench import summary
from tests.conftest import ROOT

CPU_TABLES = ROOT / "docs/results/cpu/tables"
# the written pages and configs; docs/results/ holds the workflow's own tables, not prose
DOCS = [
    "README.md",
    "BENCHMARKS.md",
    "benchmarks/README.md",
    "docs/*.md",
    "docs/tasks/*.md",
    "docs/notes/*.md",
    "tasks/*.yaml",
    "config/*.yaml",
]
TOP = "graftbench|tests|benchmarks|rules|config|tasks|profiles|scorers|report|docs|results|scripts"
PATH = re.compile(rf"(?<![\w/.-])(?:{TOP})/[\w./{{}},*-]*")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")  # [text](target) and ![alt](image)


def named_paths(text: str) -> set[str]:
    """Repository paths in `text` outside Markdown links (relative to the repository's
    root), {a,b} alternatives expanded; placeholders (<task>, {profile}) and run outputs
    under results/ left out."""
    out = set()
    text = LINK.sub("", text)  # links (their text too) resolve from their page: `links`
    for match in PATH.findall(text):
        path = match.rstrip(".,")
        if path.startswith("results/") or re.search(r"\{[a-z_]+\}|<", path):
            continue
        if m := re.search(r"\{([\w.,-]+)\}", path):
            out |= {path.replace(m.group(0), alt) for alt in m.group(1).split(",")}
        else:
            out.add(path)
    return out


def links(page: Path) -> set[str]:
    """The page's relative links and images, as paths from the repository's root (web
    addresses and same-page anchors left out)."""
    out = set()
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        out.add(str((page.parent / target.split("#")[0]).resolve().relative_to(ROOT)))
    return out


@pytest.mark.parametrize("pattern", DOCS)
def test_every_path_and_link_the_docs_name_exists(pattern):
    files = sorted(ROOT.glob(pattern))
    assert files, pattern
    missing = sorted(
        f"{doc.relative_to(ROOT)}: {path}"
        for doc in files
        for path in named_paths(doc.read_text()) | (links(doc) if doc.suffix == ".md" else set())
        if not list(ROOT.glob(path))
    )
    assert not missing, missing


def test_paths_and_links_are_found(tmp_path):
    text = "see `graftbench/tasks/{t2i,layout}/config.py`, tasks/t2i.yaml. and results/x/y"
    text += " [docs/x.md](x.md)"
    assert named_paths(text) == {
        "graftbench/tasks/t2i/config.py",
        "graftbench/tasks/layout/config.py",
        "tasks/t2i.yaml",
    }
    page = ROOT / "docs" / "tasks" / "t2i.md"  # links resolve from the page's own folder
    assert {"README.md", "docs/paper-scale.md"} <= links(page)


def block(text: str, name: str) -> str:
    m = re.search(rf"<!-- summary:{name} -->\n(.*?)<!-- /summary:{name} -->", text, re.S)
    assert m, f"no generated block {name}"
    return m.group(1)


# The README and BENCHMARKS.md take their numbers from docs/results/cpu, which `make run`
# then `make docs` writes: until that copy is checked in, these checks cannot run.
needs_cpu_tables = pytest.mark.skipif(
    not CPU_TABLES.is_dir(), reason="docs/results/cpu not made yet: make run && make docs"
)


@needs_cpu_tables
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


@needs_cpu_tables
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


@needs_cpu_tables
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
