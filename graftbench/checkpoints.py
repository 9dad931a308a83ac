"""Checkpoint files: safetensors, with the config and the state's structure in the header.

A checkpoint is a safetensors file (https://github.com/huggingface/safetensors): a JSON
header, then the raw bytes of each tensor. Loading one parses JSON and copies bytes and never
unpickles, so a checkpoint from anyone cannot run code (torch.load(weights_only=False) can).

The header's `__metadata__` has one key, "graftbench", holding one JSON object (one key, as
safetensors writes its metadata map in random order and the same content should give the
same bytes):
    format          FORMAT
    kind            what the file is, e.g. "molecule model", "fid feature net", "inc noise",
                    "training state" (train.fit's resumable state), "loop state" (the
                    fine-tuning loop's); loading names the kind it expects
    content_sha256  sha256 over the skeleton and each tensor's name, dtype, shape and bytes:
                    equal for equal content (what the FID cache keys on)
    config          the config that made the file (encoded as the state is)
    versions        the package versions (records.versions)
    state           the skeleton: the nested state as JSON, each tensor replaced by
                    {"$tensor": name}, see `_encode`
    sha256          over the JSON of all the above: a changed byte anywhere in the header, or
                    (through content_sha256) in the data, fails the check on load
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import OrderedDict
from pathlib import Path, PurePath
from typing import Any

import numpy as np
import torch

from graftbench.config import InputError

FORMAT = "graftbench checkpoint 1"
RESERVED = ("config", "versions")  # keys of the loaded dict that are not the state's
_MAX_HEADER = 100 * 2**20  # safetensors' own limit on the header's size


class Checkpoint(dict):
    """A loaded checkpoint: {"config", "versions", **state}, plus its kind and content hash."""

    kind: str
    content_sha256: str


def save(path: Path, state: dict, config: dict, kind: str, versions: dict) -> None:
    """Write `state` (nested dicts, lists, tuples, scalars, tensors, numpy arrays) to `path`.
    Each tensor is copied to a contiguous CPU tensor of its own, so views, shared storage
    and GPU tensors are all saved as their values."""
    from safetensors.torch import save_file

    if clash := [k for k in RESERVED if k in state]:
        raise ValueError(f"checkpoint state: key {clash[0]!r} is reserved for the header")
    tensors: dict[str, torch.Tensor] = {}
    skeleton = _encode(state, "", tensors)
    none: dict[str, torch.Tensor] = {}
    record = {
        "format": FORMAT,
        "kind": kind,
        "content_sha256": _content_sha256(_dumps(skeleton), tensors),
        "config": _encode(config, "config", none),
        "versions": versions,
        "state": skeleton,
    }
    if none:
        raise TypeError(f"checkpoint config: holds a tensor at {next(iter(none))}")
    record["sha256"] = hashlib.sha256(_dumps(record).encode()).hexdigest()
    save_file(tensors, str(path), metadata={"graftbench": _dumps(record)})


def load(path: Path, kind: str | tuple[str, ...] | None) -> Checkpoint:
    """The checkpoint at `path`, checked against its hashes and, unless `kind` is None,
    against the kind(s) expected; an InputError naming the path for anything wrong."""
    from safetensors.torch import load_file

    record = read_record(path, kind)
    try:
        tensors = load_file(str(path))
    except Exception as err:  # safetensors' own checks of offsets, dtypes and sizes
        raise InputError(f"{path}: corrupt safetensors data ({_one_line(err)})") from None
    if _content_sha256(_dumps(record["state"]), tensors) != record["content_sha256"]:
        raise InputError(f"{path}: corrupt: its tensors do not match the hash in its header")
    try:
        used: set[str] = set()
        state = _decode(record["state"], tensors, used)
        config = decode_config(record)
        if extra := sorted(set(tensors) - used):
            raise ValueError(f"tensor {extra[0]!r} is not part of the state")
    except (ValueError, TypeError, KeyError) as err:
        raise InputError(f"{path}: malformed checkpoint header ({_one_line(err)})") from None
    out = Checkpoint(config=config, versions=record["versions"])
    out.update(state)
    out.kind, out.content_sha256 = record["kind"], record["content_sha256"]
    return out


def decode_config(record: dict) -> Any:
    """The config of a header `read_record` returned, as it was saved."""
    return _decode(record["config"], {}, set())


def read_record(path: Path, kind: str | tuple[str, ...] | None = None) -> dict:
    """The "graftbench" header of `path`, its checksum and kind checked (not the tensors)."""
    if not path.is_file():
        raise InputError(f"{path}: no such checkpoint file" + (" (a folder)" * path.is_dir()))
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        n = int.from_bytes(head, "little") if len(head) == 8 else 0
        text = f.read(n) if 0 < n <= min(_MAX_HEADER, size - 8) else b""
    if size == 0:
        raise InputError(f"{path}: empty file (0 bytes), not a checkpoint")
    # a zip (torch.save) or a pickle (protocol 2+); only when the file is not safetensors,
    # whose header length can begin with the same byte
    if not text.startswith(b"{") and (head[:4] == b"PK\x03\x04" or head[:1] == b"\x80"):
        raise InputError(
            f"{path}: a torch.save/pickle file, not a safetensors checkpoint; graftbench does "
            "not unpickle checkpoints (unpickling can run code): re-create it"
        )
    if not text:
        raise InputError(
            f"{path}: truncated or not a safetensors checkpoint "
            f"(a header of {n} bytes in a file of {size})"
        )
    try:
        header = json.loads(text)
        meta = header.get("__metadata__") or {}
        if "graftbench" not in meta:
            raise InputError(f"{path}: a safetensors file, but not a graftbench checkpoint")
        record = json.loads(meta["graftbench"])
        claimed = record.pop("sha256")
        ends = [v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"]
        if not all(type(end) is int for end in ends):
            raise ValueError("data offsets that are not integers")
    except InputError:
        raise
    except (ValueError, TypeError, KeyError, AttributeError, IndexError) as err:
        raise InputError(f"{path}: corrupt checkpoint header ({_one_line(err)})") from None
    if record.get("format") != FORMAT:
        raise InputError(f"{path}: format {record.get('format')!r}, expected {FORMAT!r}")
    if hashlib.sha256(_dumps(record).encode()).hexdigest() != claimed:
        raise InputError(f"{path}: corrupt: its header does not match the hash it carries")
    if missing := sorted({"kind", "content_sha256", "config", "versions", "state"} - set(record)):
        raise InputError(f"{path}: malformed checkpoint header (no {missing[0]!r})")
    if (want := 8 + n + max(ends, default=0)) != size:
        what = "truncated" if size < want else f"{size - want} bytes too long"
        raise InputError(f"{path}: {what} ({size} bytes, its header describes {want})")
    expected = (kind,) if isinstance(kind, str) else kind
    if expected is not None and record["kind"] not in expected:
        want_kind = " or ".join(expected)
        raise InputError(
            f"{path}: {_a(record['kind'])} checkpoint, expected {_a(want_kind)} checkpoint"
        )
    return record


def _encode(obj: Any, where: str, tensors: dict[str, torch.Tensor]) -> Any:
    """JSON for `obj`: None, bools, ints, strings, finite floats and lists as themselves;
    dicts with string keys (none starting with "$") as objects; everything else as a tagged
    object {"$tag": ...}: "$float" (inf, -inf, nan), "$tuple", "$dict"/"$odict" (a list of
    [key, value] pairs: any keys, e.g. the optimiser's ints; an OrderedDict keeps its
    `_metadata`, which load_state_dict reads module versions from, under "$metadata"),
    "$tensor"/"$ndarray" (the name of a tensor in the file), "$numpy" (a numpy scalar:
    [dtype, value]) and "$path"."""
    if obj is None or type(obj) in (bool, int, str):
        return obj
    if type(obj) is float:
        return obj if math.isfinite(obj) else {"$float": repr(obj)}
    if type(obj) is list:
        return [_encode(v, f"{where}/{i}", tensors) for i, v in enumerate(obj)]
    if type(obj) is tuple:
        return {"$tuple": [_encode(v, f"{where}/{i}", tensors) for i, v in enumerate(obj)]}
    if type(obj) is dict and all(type(k) is str and not k.startswith("$") for k in obj):
        return {k: _encode(v, _join(where, k), tensors) for k, v in obj.items()}
    if type(obj) in (dict, OrderedDict):
        pairs = [
            [_encode(k, _join(where, k), tensors), _encode(v, _join(where, k), tensors)]
            for k, v in obj.items()
        ]
        out = {"$dict" if type(obj) is dict else "$odict": pairs}
        if hasattr(obj, "_metadata"):
            out["$metadata"] = _encode(obj._metadata, _join(where, "_metadata"), tensors)
        return out
    if isinstance(obj, torch.Tensor):
        return {"$tensor": _add(tensors, where, obj)}
    if isinstance(obj, np.ndarray):
        return {"$ndarray": _add(tensors, where, torch.from_numpy(np.ascontiguousarray(obj)))}
    if isinstance(obj, np.generic):
        return {"$numpy": [obj.dtype.str, _encode(obj.item(), where, tensors)]}
    if isinstance(obj, PurePath):
        return {"$path": str(obj)}
    raise TypeError(f"checkpoint state {where or '/'}: cannot store a {type(obj).__name__}")


def _decode(obj: Any, tensors: dict[str, torch.Tensor], used: set[str]) -> Any:
    if obj is None or type(obj) in (bool, int, float, str):
        return obj
    if type(obj) is list:
        return [_decode(v, tensors, used) for v in obj]
    tag = next((k for k in obj if k.startswith("$")), None)
    if tag is None:
        return {k: _decode(v, tensors, used) for k, v in obj.items()}
    value = obj[tag]
    if tag == "$float" and value in ("inf", "-inf", "nan"):
        return float(value)
    if tag == "$tuple":
        return tuple(_decode(v, tensors, used) for v in value)
    if tag in ("$dict", "$odict"):
        out = (dict if tag == "$dict" else OrderedDict)(
            (_decode(k, tensors, used), _decode(v, tensors, used)) for k, v in value
        )
        if "$metadata" in obj:
            out._metadata = _decode(obj["$metadata"], tensors, used)
        return out
    if tag in ("$tensor", "$ndarray"):
        used.add(value)
        return tensors[value] if tag == "$tensor" else tensors[value].numpy()
    if tag == "$numpy":
        return np.dtype(value[0]).type(_decode(value[1], tensors, used))
    if tag == "$path":
        return Path(value)
    raise ValueError(f"unknown tag {tag!r}")


def _add(tensors: dict[str, torch.Tensor], where: str, t: torch.Tensor) -> str:
    """Store a contiguous CPU copy of `t` under its place in the state, made unique."""
    name, i = where or "tensor", 0
    while name in tensors or name == "__metadata__":
        i += 1
        name = f"{where}#{i}"
    tensors[name] = t.detach().to("cpu", copy=True, memory_format=torch.contiguous_format)
    return name


def _content_sha256(skeleton: str, tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256(skeleton.encode())
    for name in sorted(tensors):
        t = tensors[name]
        h.update(json.dumps([name, str(t.dtype), list(t.shape)]).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()


def _dumps(obj: Any) -> str:
    # compact, key order as built, no NaN/Infinity (those are tagged): json.loads then
    # _dumps gives back the same text, so the hashes can be recomputed from the file
    return json.dumps(obj, separators=(",", ":"), allow_nan=False)


def _join(where: str, key: Any) -> str:
    return f"{where}/{key}" if where else str(key)


def _a(noun: str) -> str:
    return f"{'an' if noun[:1] in 'aeiou' else 'a'} {noun}"


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= 200 else text[:197] + "..."
