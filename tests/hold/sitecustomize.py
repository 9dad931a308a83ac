"""Test-only: put this folder on PYTHONPATH and set GRAFTBENCH_HOLD_AT to a log-line prefix
("round 0:"), and any graftbench process that logs such a line sleeps right after writing
it, so a test can kill a job at a known point instead of racing it. The handler sits on the
root logger, which the `graftbench` logger propagates to after its own handler has written
the line to the job log."""

import logging
import os
import time

_PREFIX = os.environ.get("GRAFTBENCH_HOLD_AT")


class _Hold(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith("graftbench") and record.getMessage().startswith(_PREFIX):
            for handler in logging.getLogger("graftbench").handlers:
                handler.flush()
            time.sleep(3600)


if _PREFIX:
    logging.getLogger().addHandler(_Hold())
