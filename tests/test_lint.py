"""The formatters own the layout: ruff (lint and format) over the Python, snakefmt over the
workflow, as `make lint` runs them (`snakemake --lint` is tests/test_workflow.py's)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

BIN = Path(sys.executable).parent
PYTHON = ["graftbench", "tests", "benchmarks", "scorers"]


@pytest.mark.parametrize(
    "command",
    [
        ["ruff", "check", *PYTHON],
        ["ruff", "format", "--check", *PYTHON],
        ["snakefmt", "--check", "Snakefile", "rules"],
    ],
    ids=["ruff-check", "ruff-format", "snakefmt"],
)
def test_code_is_formatted_and_lint_free(command):
    run = subprocess.run(
        [str(BIN / command[0]), *command[1:]], cwd=ROOT, capture_output=True, text=True
    )
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
