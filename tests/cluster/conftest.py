"""The SLURM cluster tests (`make test-cluster`): left out of a plain `pytest` run.

They start a one-node SLURM cluster (scripts/slurm-cluster, root or sudo, Debian packages)
and run the smoke workflow through it for most of an hour, so this folder is collected only
when it is named on the command line (`pytest tests/cluster`, as `make test-cluster` does) or
GRAFTBENCH_CLUSTER_TESTS=1 is set. `pytest` from the repository root (testpaths = tests) and
`pytest tests` skip it: `pytest_ignore_collect` below answers for every file in this folder
(a conftest's hook is asked about the folder's own entries).

Timings land in the terminal summary and in the JSON file named by GRAFTBENCH_CLUSTER_TIMINGS
(default: .pytest_cache/cluster-timings.json).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
TIMINGS: dict[str, object] = {}


def _asked(config) -> bool:
    if os.environ.get("GRAFTBENCH_CLUSTER_TESTS") == "1":
        return True
    for arg in config.args:
        path = Path(str(arg).split("::")[0])
        path = (path if path.is_absolute() else Path(config.invocation_params.dir) / path).resolve()
        if path == HERE or HERE in path.parents:
            return True
    return False


def pytest_ignore_collect(collection_path, config):
    if collection_path.suffix == ".py" and not _asked(config):
        return True
    return None


@pytest.fixture(scope="session")
def timings() -> dict[str, object]:
    """Name -> value; printed at the end of the run (tests add to it)."""
    return TIMINGS


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "cluster: needs a one-node SLURM cluster (scripts/slurm-cluster; root or sudo)"
    )


def pytest_terminal_summary(terminalreporter):
    if not TIMINGS:
        return
    terminalreporter.section("SLURM cluster timings")
    for key, value in TIMINGS.items():
        terminalreporter.write_line(f"{key}: {value}")
    out = Path(
        os.environ.get(
            "GRAFTBENCH_CLUSTER_TIMINGS", HERE.parents[1] / ".pytest_cache/cluster-timings.json"
        )
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(TIMINGS, indent=2) + "\n")
    terminalreporter.write_line(f"(written to {out})")
