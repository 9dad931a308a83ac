"""Every path the README, BENCHMARKS.md, benchmarks/README.md and the task and config YAMLs
name in the repository exists (a moved module leaves no stale pointer behind)."""

from __future__ import annotations

import re

import pytest

from tests.conftest import ROOT

DOCS = ["README.md", "BENCHMARKS.md", "benchmarks/README.md", "tasks/*.yaml", "config/*.yaml"]
TOP = "graftbench|tests|benchmarks|rules|config|tasks|profiles|scorers|report|docs|results"
PATH = re.compile(rf"(?<![\w/.-])(?:{TOP})/[\w./{{}},*-]*")


def named_paths(text: str) -> set[str]:
    """Repository paths in `text`, {a,b} alternatives expanded; placeholders (<task>,
    {profile}) and run outputs under results/ left out."""
    out = set()
    for match in PATH.findall(text):
        path = match.rstrip(".,")
        if path.startswith("results/") or re.search(r"\{[a-z_]+\}|<", path):
            continue
        if m := re.search(r"\{([\w.,-]+)\}", path):
            out |= {path.replace(m.group(0), alt) for alt in m.group(1).split(",")}
        else:
            out.add(path)
    return out


@pytest.mark.parametrize("pattern", DOCS)
def test_every_path_the_docs_name_exists(pattern):
    files = sorted(ROOT.glob(pattern))
    assert files, pattern
    missing = sorted(
        f"{doc.relative_to(ROOT)}: {path}"
        for doc in files
        for path in named_paths(doc.read_text())
        if not list(ROOT.glob(path))
    )
    assert not missing, missing


def test_paths_are_found():
    text = "see `graftbench/tasks/{t2i,layout}/config.py`, tasks/t2i.yaml. and results/x/y"
    assert named_paths(text) == {
        "graftbench/tasks/t2i/config.py",
        "graftbench/tasks/layout/config.py",
        "tasks/t2i.yaml",
    }
