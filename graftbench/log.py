"""Where the package's log lines go: every verb's log (a workflow job's log file) gets one
timestamped line per event from the `graftbench` logger; modules log with
`logging.getLogger(__name__)`."""

from __future__ import annotations

import logging
import sys


def log_to_stderr() -> None:
    """The package's log lines, with a timestamp each, on stderr (a job's log file): one
    handler on the `graftbench` logger, replaced on every call so that it writes to the
    current sys.stderr."""
    logger = logging.getLogger("graftbench")
    for handler in [h for h in logger.handlers if getattr(h, "graftbench", False)]:
        logger.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.graftbench = True
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
