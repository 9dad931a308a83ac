"""The server side of graftbench's scorer protocol (see graftbench/tasks/t2i/scorer.py), standard library
only, so that a scorer's own environment (t2v-metrics with its pinned torch) needs nothing
from ours.

A scorer script loads its model, then calls `serve(score, name, version)`, where
score(image_paths, prompts) returns one float per image. Anything the script wants to log
goes to stderr: stdout carries the protocol.
"""

from __future__ import annotations

import json
import sys
import traceback
from collections.abc import Callable, Sequence


def say(message: dict) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def refuse(message: str) -> None:
    """Tell graftbench why this scorer cannot start (what to install, where weights go), and exit."""
    say({"error": message})
    sys.exit(2)


def serve(
    score: Callable[[Sequence[str], Sequence[str]], Sequence[float]], name: str, version: str
) -> None:
    """Answer score requests from stdin until it closes."""
    say({"ready": True, "scorer": name, "version": version})
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            request = json.loads(line)
            images, prompts = request["images"], request["prompts"]
            scores = [float(s) for s in score(images, prompts)]
        except Exception as err:  # report it to the client, which fails the run with it
            traceback.print_exc(file=sys.stderr)
            say({"error": f"{type(err).__name__}: {err}"})
            continue
        say({"scores": scores})
