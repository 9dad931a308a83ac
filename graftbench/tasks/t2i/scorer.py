"""Rewards computed by a scorer in another environment, over a line protocol.

VQAScore (t2v-metrics) pins old torch and transformers and fetches its weights, so it cannot
share our environment; it runs as a long-lived child process in its own, loaded once and
asked for scores batch by batch. The protocol is small so that any scorer can speak it
(`scorers/protocol.py` implements the server side with the standard library only):

1. We start `command` (e.g. `/opt/t2v/bin/python scorers/vqascore.py --cache-dir ...`).
   Once loaded it prints one JSON line: {"ready": true, "scorer": name, "version": version}.
   A scorer that cannot load prints {"error": message} (what to install, where to put
   weights) and exits.
2. Per batch we write the images as PNGs to a fresh folder and send one JSON line
   {"images": [path, ...], "prompts": [text, ...]}; it answers one line {"scores": [float,
   ...]}, one per image, or {"error": message}.
3. Closing its stdin ends it.

The child's stderr (its own logging) goes to a log file, never a pipe we might not drain;
its last lines are quoted in every error. Subprocess plus JSON lines rather than a socket or
an RPC library: the child is a plain script in an environment we do not control, and a pipe
needs no port, no extra package on either side, and dies with its parent.
"""

from __future__ import annotations

import json
import math
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image


class ScorerError(RuntimeError):
    """The scorer process failed or broke the protocol; the message says how."""


class ScorerProcess:
    """A running external scorer; use as a context manager, or call `close()`."""

    def __init__(
        self,
        command: Sequence[str],
        log: str | Path,
        workdir: str | Path | None = None,
        env: dict[str, str] | None = None,
    ):
        self.command = list(command)
        self.log_path = Path(log)
        self._workdir = Path(workdir) if workdir else None
        self._batches = 0
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("w")
        try:
            self._proc = subprocess.Popen(
                self.command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._log,
                text=True,
                bufsize=1,
                env=env,
            )
        except OSError as err:
            self._log.close()
            raise ScorerError(f"scorer command {self.command[0]!r} cannot start: {err}") from err
        self._tmp = tempfile.TemporaryDirectory(prefix="graftbench-scorer-", dir=self._workdir)
        try:
            hello = self._read("starting")
            if not hello.get("ready"):
                raise self._fail(f"it did not say it was ready, it said {hello}")
        except BaseException:
            self.close()
            raise
        self.name = str(hello.get("scorer", self.command[-1]))
        self.version = str(hello.get("version", "unknown"))

    def __enter__(self) -> ScorerProcess:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._proc.poll() is None:
            if self._proc.stdin:
                self._proc.stdin.close()
            try:
                self._proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._log.close()
        self._tmp.cleanup()

    def score(self, images: np.ndarray, prompts: Sequence[str]) -> np.ndarray:
        """Scores of images (batch, H, W, 3) uint8 against their prompts, as (batch,) float64."""
        if len(images) != len(prompts):
            raise ValueError(f"scorer: {len(images)} images but {len(prompts)} prompts")
        folder = Path(self._tmp.name) / f"batch{self._batches:06d}"
        self._batches += 1
        folder.mkdir()
        paths = []
        for i, image in enumerate(images):
            path = folder / f"{i:05d}.png"
            Image.fromarray(np.asarray(image, dtype=np.uint8)).save(path)
            paths.append(str(path))
        self._send({"images": paths, "prompts": [str(p) for p in prompts]})
        answer = self._read(f"scoring batch {self._batches}")
        for path in paths:
            Path(path).unlink()
        folder.rmdir()
        scores = answer.get("scores")
        if not isinstance(scores, list) or len(scores) != len(paths):
            got = len(scores) if isinstance(scores, list) else scores
            raise self._fail(f"asked for {len(paths)} scores, got {got}")
        if not all(isinstance(s, (int, float)) and math.isfinite(s) for s in scores):
            raise self._fail(f"returned a score that is not a finite number: {scores}")
        return np.asarray(scores, dtype=np.float64)

    def reward(self):
        """The reward function of the suite's signature: reward(images, prompts), where a
        prompt is a string or has a `.text` (the t2i task's Prompt)."""

        def reward(images: np.ndarray, prompts: Sequence) -> np.ndarray:
            return self.score(images, [getattr(p, "text", p) for p in prompts])

        return reward

    def _send(self, message: dict) -> None:
        try:
            assert self._proc.stdin is not None
            self._proc.stdin.write(json.dumps(message) + "\n")
            self._proc.stdin.flush()
        except (BrokenPipeError, OSError) as err:
            raise self._fail(f"it stopped reading its input ({err})") from err

    def _read(self, doing: str) -> dict:
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line:
            code = self._proc.wait()
            raise self._fail(f"it exited with status {code} while {doing}")
        try:
            message = json.loads(line)
        except json.JSONDecodeError:
            raise self._fail(
                f"it printed a line that is not JSON while {doing}: {line[:200]!r}"
            ) from None
        if not isinstance(message, dict):
            raise self._fail(f"it printed {message!r} while {doing}, not a JSON object")
        if "error" in message:
            raise self._fail(str(message["error"]))
        return message

    def _fail(self, what: str) -> ScorerError:
        self._log.flush()
        tail = self.log_path.read_text(errors="replace").strip().splitlines()[-5:]
        where = (
            f"\n  last lines of its log {self.log_path}:\n    " + "\n    ".join(tail)
            if tail
            else ""
        )
        return ScorerError(f"scorer {' '.join(self.command)}: {what}{where}")
