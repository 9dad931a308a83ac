"""Score a folder of samples in the suite's open format (PNG files, plus conditions.jsonl
for conditional tasks), whether our workflow made it or not."""

from __future__ import annotations

import json
import time
from pathlib import Path

from graftbench import records
from graftbench.config import InputError
from graftbench.data.images import IMAGE_SUFFIXES
from graftbench.metrics import fid as fidlib


def check_sample_folder(folder: str | Path) -> int:
    """Number of images in `folder`; a clear error if it is missing, empty or its
    conditions.jsonl (when present beside it) is malformed or of another length."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: not a folder of samples")
    n = sum(1 for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if n == 0:
        raise FileNotFoundError(f"{folder}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) found")
    conditions = folder.parent / "conditions.jsonl"
    if conditions.exists():
        rows = 0
        for lineno, line in enumerate(conditions.read_text().splitlines(), 1):
            try:
                json.loads(line)
            except json.JSONDecodeError as err:
                raise InputError(f"{conditions}:{lineno}: not a JSON object ({err.msg})") from None
            rows += 1
        if rows != n:
            raise InputError(f"{conditions}: {rows} lines for {n} images in {folder}")
    return n


def evaluate_fid(samples: str | Path, reference: str | Path, backends: list[str], device: str,
                 feature_net: str | None = None) -> dict:  # fmt: skip
    """FID of `samples` against `reference` under each back-end -> a metrics dict."""
    n = check_sample_folder(samples)
    n_ref = check_sample_folder(reference)
    out = {"n_samples": n, "n_reference": n_ref, "reference": str(reference), "fid": {},
           "versions": records.versions()}  # fmt: skip
    for name in backends:
        t0 = time.perf_counter()
        backend = fidlib.load_backend(name, device, feature_net)
        ref = fidlib.reference_features(reference, backend, device)
        feats = fidlib.folder_features(samples, backend, device)
        out["fid"][name] = fidlib.fid(feats, ref)
        out.setdefault("fid_backend_key", {})[name] = backend.key
        out.setdefault("eval_wall_s", {})[name] = time.perf_counter() - t0
    return out
