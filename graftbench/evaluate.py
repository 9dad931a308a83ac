"""Score a folder of samples in the suite's open format (PNG files, plus conditions.jsonl
for conditional tasks), whether our workflow made it or not."""

from __future__ import annotations

import json
import time
from pathlib import Path

from graftbench import records
from graftbench.config import InputError
from graftbench.metrics import fid as fidlib
from graftbench.tasks.unconditional.data import IMAGE_SUFFIXES, open_image


def check_sample_folder(folder: str | Path) -> int:
    """Number of images in `folder`; a clear error naming the file if the folder is missing
    or empty, an image is unreadable or of another size than the first (samples of one run
    share one size: a mixed folder is a mistake), or conditions.jsonl (when present beside
    it) has a line that is not a JSON object or another number of lines."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: not a folder of samples")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"{folder}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) found")
    first = open_image(files[0]).size
    for f in files[1:]:
        if (size := open_image(f).size) != first:
            raise InputError(
                f"{f}: {size[0]}x{size[1]}, but {files[0].name} is "
                f"{first[0]}x{first[1]}; the samples of a folder share one size"
            )
    conditions = folder.parent / "conditions.jsonl"
    if conditions.exists():
        rows = 0
        for lineno, line in enumerate(conditions.read_text().splitlines(), 1):
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise InputError(f"{conditions}:{lineno}: not a JSON object ({err.msg})") from None
            if not isinstance(row, dict):
                raise InputError(f"{conditions}:{lineno}: not a JSON object (got {line.strip()!r})")
            rows += 1
        if rows != len(files):
            raise InputError(f"{conditions}: {rows} lines for {len(files)} images in {folder}")
    return len(files)


def evaluate_fid(
    samples: str | Path,
    reference: str | Path,
    backends: list[str],
    device: str,
    feature_net: str | None = None,
    allow_rank_deficient: bool = False,
) -> dict:
    """FID of `samples` against `reference` under each back-end -> a metrics dict. Each
    folder needs more images than the back-end's feature dimension (`fidlib.min_samples`),
    else an InputError names it, unless `allow_rank_deficient` (then at least 2, and the
    result records "rank_deficient": true for that back-end)."""
    n = check_sample_folder(samples)
    n_ref = check_sample_folder(reference)
    out = {
        "n_samples": n,
        "n_reference": n_ref,
        "reference": str(reference),
        "fid": {},
        "versions": records.versions(),
    }
    for name in backends:
        t0 = time.perf_counter()
        backend = fidlib.load_backend(name, device, feature_net)
        full_rank = fidlib.min_samples(backend.dim)
        need = 2 if allow_rank_deficient else full_rank
        for folder, count in ((samples, n), (reference, n_ref)):
            if count < need:
                why = "" if allow_rank_deficient else " (more than the feature dimension)"
                raise InputError(
                    f"{folder}: {count} images; FID with the {name} back-end "
                    f"({backend.dim}-d features) needs at least {need} per folder{why}"
                )
        ref = fidlib.reference_features(reference, backend, device)
        feats = fidlib.folder_features(samples, backend, device)
        out["fid"][name] = fidlib.fid(feats, ref, allow_rank_deficient)
        out.setdefault("feature_dim", {})[name] = backend.dim
        if allow_rank_deficient:
            out.setdefault("rank_deficient", {})[name] = min(n, n_ref) < full_rank
        out.setdefault("fid_backend_key", {})[name] = backend.key
        out.setdefault("eval_wall_s", {})[name] = time.perf_counter() - t0
    return out
