"""The paper-scale text-to-image prompt sets, read from files the user supplies.

None ships with a package and nothing here downloads: get the files once (URLs in the README,
"Paper scale") and point the loader at them. Each loader checks the format and names the file
and line of anything it cannot use.

- GenAI-Bench (Li et al. 2024; the paper's T2I benchmark): `genai_image.json`, a mapping
  id -> {"prompt": ..., ...}, 1,600 prompts in GenAI-Bench-1600 (527 in the older set).
  Category: "genai" (its skill tags live in a separate file and are kept out of scope).
- GenEval (Ghosh et al. 2023): `evaluation_metadata.jsonl`, one object per line with "tag"
  (single_object, two_object, counting, colors, position, color_attr) and "prompt", plus the
  object specs ("include", ...) GenEval's detector checks, kept as `meta`.
- T2I-CompBench++ (Huang et al. 2023/2025): a folder of `<category>_val.txt` files (color,
  shape, texture, spatial, non_spatial, complex, 3d_spatial, numeracy), one prompt per line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from graftbench.config import InputError

SETS = ("genai-bench", "geneval", "t2i-compbench")


@dataclass(frozen=True)
class BenchPrompt:
    id: str  # stable within its set: the file's id, or file:line
    text: str
    category: str
    meta: dict = field(default_factory=dict, compare=False, hash=False)


def load_prompt_set(name: str, path: str | Path) -> list[BenchPrompt]:
    """The prompts of set `name` (one of SETS) from `path` (its file, or folder for
    T2I-CompBench++)."""
    loaders = {
        "genai-bench": load_genai_bench,
        "geneval": load_geneval,
        "t2i-compbench": load_t2i_compbench,
    }
    if name not in loaders:
        raise InputError(f"prompt set {name!r} is not known; choose one of {', '.join(SETS)}")
    prompts = loaders[name](Path(path))
    if not prompts:
        raise InputError(f"{path}: no prompts found")
    return prompts


def _text(value, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"{where}: 'prompt' must be a non-empty string, got {value!r}")
    return value.strip()


def _find(path: Path, name: str, source: str) -> Path:
    """The set's file: `path` itself, or `name` inside the folder `path`."""
    path = path / name if path.is_dir() else path
    if not path.is_file():
        raise InputError(f"{path}: not found; the prompts are {name} ({source})")
    return path


def load_genai_bench(path: Path) -> list[BenchPrompt]:
    path = _find(path, "genai_image.json", "BaiqiL/GenAI-Bench-1600 on the Hugging Face hub")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise InputError(f"{path}: not JSON ({err})") from None
    if not isinstance(data, dict):
        raise InputError(
            f"{path}: expected a mapping id -> {{'prompt': ...}}, got a {type(data).__name__}"
        )
    out = []
    for key, item in data.items():
        if not isinstance(item, dict) or "prompt" not in item:
            raise InputError(f"{path}: entry {key!r} has no 'prompt'")
        out.append(BenchPrompt(str(key), _text(item["prompt"], f"{path}: entry {key!r}"), "genai"))
    return out


def load_geneval(path: Path) -> list[BenchPrompt]:
    path = _find(path, "evaluation_metadata.jsonl", "prompts/ in djghosh13/geneval")
    out = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path} line {n}"
        try:
            item = json.loads(line)
        except json.JSONDecodeError as err:
            raise InputError(f"{where}: not JSON ({err.msg})") from None
        if not isinstance(item, dict) or "tag" not in item or "prompt" not in item:
            raise InputError(f"{where}: expected an object with 'tag' and 'prompt'")
        meta = {k: v for k, v in item.items() if k not in ("tag", "prompt")}
        out.append(
            BenchPrompt(f"{path.name}:{n}", _text(item["prompt"], where), str(item["tag"]), meta)
        )
    return out


def load_t2i_compbench(path: Path) -> list[BenchPrompt]:
    if not path.is_dir():
        raise InputError(
            f"{path}: expected T2I-CompBench's dataset folder of <category>_val.txt "
            "files (examples/dataset in its repository)"
        )
    files = sorted(path.glob("*_val.txt"))
    if not files:
        raise InputError(
            f"{path}: no <category>_val.txt files (color_val.txt, spatial_val.txt, ...)"
        )
    out = []
    for f in files:
        category = f.name.removesuffix("_val.txt")
        for n, line in enumerate(f.read_text().splitlines(), 1):
            if line.strip():
                out.append(BenchPrompt(f"{f.name}:{n}", line.strip(), category))
    return out


def split_prompt_set(
    prompts: list[BenchPrompt], heldout_fraction: float, seed: int
) -> tuple[list[BenchPrompt], list[BenchPrompt]]:
    """(train, held-out): `heldout_fraction` of each category's prompts (rounded, at least
    one when the category has two or more) held out at random with `seed`, both in file
    order. Fine-tuning draws on the training prompts; the held-out ones measure whether what
    it learnt carries over to prompts it never saw."""
    rng = np.random.default_rng(seed)
    held: set[int] = set()
    for category in dict.fromkeys(p.category for p in prompts):
        idx = [i for i, p in enumerate(prompts) if p.category == category]
        n = min(len(idx) - 1, max(1, round(heldout_fraction * len(idx))))
        held.update(int(i) for i in rng.permutation(idx)[:n])
    return (
        [p for i, p in enumerate(prompts) if i not in held],
        [p for i, p in enumerate(prompts) if i in held],
    )
