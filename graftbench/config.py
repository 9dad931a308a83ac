"""Typed configs for the verbs: dataclasses that reject unknown keys and wrong types.

The workflow validates the whole config against `config/schema.yaml` when it loads; each
verb then parses its own slice into a dataclass with `parse`, so a verb run by hand (without
Snakemake) gets the same checks. Written by hand rather than with dacite/pydantic because
we want the message to name the full key path and the allowed values, e.g.
    unconditional.sample.solver: 'rk4' is not allowed; choose one of 'euler', 'heun'
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar, get_args, get_origin

T = TypeVar("T")


@dataclass(frozen=True)
class Range:
    """Bounds of a number key, checked by `parse` and written into the JSON schema."""

    min: float | None = None  # smallest allowed value
    max: float | None = None  # largest allowed value
    open_min: bool = False  # min itself not allowed (a value must exceed it)
    open_max: bool = False  # max itself not allowed

    def check(self, value: float, key: str) -> None:
        low = self.min is None or (value > self.min if self.open_min else value >= self.min)
        high = self.max is None or (value < self.max if self.open_max else value <= self.max)
        if not (low and high):
            raise ConfigError(f"{key}: {value!r} is out of range; allowed: {self.describe()}")

    def describe(self) -> str:
        if self.max is None:
            return f"{'>' if self.open_min else '>='} {self.min:g}"
        if self.min is None:
            return f"{'<' if self.open_max else '<='} {self.max:g}"
        left, right = "(" if self.open_min else "[", ")" if self.open_max else "]"
        return f"{left}{self.min:g}, {self.max:g}{right}"


@dataclass(frozen=True)
class Items:
    """Constraints on a list key: its least length and whether entries must differ."""

    min: int = 0  # fewest entries
    distinct: bool = False  # no entry twice

    def check(self, value: list, key: str) -> None:
        if len(value) < self.min:
            raise ConfigError(f"{key}: {value!r} needs at least {self.min} entries")
        if self.distinct and len(set(map(repr, value))) < len(value):
            twice = next(v for i, v in enumerate(value) if v in value[:i])
            raise ConfigError(f"{key}: {twice!r} appears twice; entries must be distinct")


# The bounded types of config fields: `steps: Count = 10` declares the bound once, and both
# `parse` and the generated schema (`minimum`, `minItems`, ...) read it from there.
Count = Annotated[int, Range(1)]  # a number of things or steps: at least 1
Count2 = Annotated[int, Range(2)]  # a count of at least 2 (e.g. samples a variance needs)
Natural = Annotated[int, Range(0)]  # a count where 0 means none, off or all (documented)
Positive = Annotated[float, Range(0, open_min=True)]  # a scale, width or rate: above 0
NonNegative = Annotated[float, Range(0)]  # a weight or coefficient: 0 switches it off
Probability = Annotated[float, Range(0, 1)]  # a probability or fraction in [0, 1]
Share = Annotated[float, Range(0, 1, open_max=True)]  # a share or decay in [0, 1)
PositiveShare = Annotated[float, Range(0, 1, open_min=True)]  # a share in (0, 1]
Guidance = Annotated[float, Range(1)]  # a classifier-free guidance weight (1: none)
Seeds = Annotated[list[int], Items(1, distinct=True)]  # one run per seed: non-empty, distinct
Counts = Annotated[list[Count], Items(1)]  # e.g. a sweep of step counts: non-empty


class ConfigError(ValueError):
    """A config value that the suite cannot run with; the message names the key."""


class InputError(ValueError):
    """A user-supplied file the suite cannot read; the message names the file (and line)."""


def parse(cls: type[T], data: Any, path: str = "", root: str = "") -> T:
    """Build dataclass `cls` from a mapping, checking keys, types and bounds recursively.

    path: where `data` sits in the workflow config, for messages (e.g. "t2i.profiles.smoke");
    root: where its task's config starts (the top call's path, passed down)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{path or '<root>'}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls, include_extras=True)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    moved = getattr(cls, "MOVED", {})  # a removed key -> where its setting went
    for key in unknown:
        if key in moved:
            raise ConfigError(f"{_join(path, key)}: no longer a key; use {moved[key]}")
    if unknown:
        raise ConfigError(
            f"{_join(path, unknown[0])}: unknown key; allowed keys are {', '.join(sorted(fields))}"
        )
    values = {}
    for name, field in fields.items():
        key = _join(path, name)
        if name not in data:
            no_default = field.default is dataclasses.MISSING
            if no_default and field.default_factory is dataclasses.MISSING:
                raise ConfigError(f"{key}: required key is missing")
            continue
        values[name] = _coerce(hints[name], data[name], key, root or path)
    try:
        return cls(**values)
    except ConfigError as err:  # a cross-field rule of the class's __post_init__
        raise ConfigError(_rebase(str(err), path, root or path)) from None


def _rebase(message: str, path: str, root: str) -> str:
    """Put a __post_init__ message's key under the full path of the class that raised it.

    Classes name their keys three ways: from the task ("t2i.evaluate.eta: ..."), from their
    own field name in the parent ("loop.eta: ..."), or relative ("epochs: ..."). `root` is
    where the task's config starts (e.g. "t2i.profiles.smoke"), `path` where this class is.
    """
    if not path:
        return message
    task = root.split(".")[0]
    if message.startswith(task + ".") and not message.startswith(root + "."):
        return root + message[len(task) :]
    if message.startswith(root + ".") or message.startswith(path + "."):
        return message
    parent, _, own = path.rpartition(".")
    first = message.split(":")[0].split(".")[0].split(" ")[0]
    if first == own:
        return _join(parent, message)
    return _join(path, message)


def to_dict(obj: Any) -> Any:
    """Plain-JSON view of a (nested) config dataclass."""
    return dataclasses.asdict(obj) if dataclasses.is_dataclass(obj) else obj


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _coerce(tp: Any, value: Any, key: str, root: str = "") -> Any:
    origin = get_origin(tp)
    if origin is Annotated:
        base, *marks = get_args(tp)
        out = _coerce(base, value, key, root)
        for mark in marks:
            mark.check(out, key)
        return out
    if dataclasses.is_dataclass(tp):
        return parse(tp, value, key, root)
    if origin is Literal:
        allowed = get_args(tp)
        # compare type too: `True == 1` and `3.0 == 3` must not pass for Literal[1, 3]
        if not any(value == a and type(value) is type(a) for a in allowed):
            choices = ", ".join(repr(a) for a in allowed)
            raise ConfigError(f"{key}: {value!r} is not allowed; choose one of {choices}")
        return value
    if origin in (typing.Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(arg, value, key, root)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0])
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        (item,) = get_args(tp)[:1] or (Any,)
        out = [_coerce(item, v, f"{key}[{i}]", root) for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is Any:
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in (int, float, str, bool):
        # bool is a subclass of int: `steps: true` must not pass as 1.
        if not isinstance(value, tp) or (tp is not bool and isinstance(value, bool)):
            raise ConfigError(f"{key}: expected {tp.__name__}, got {value!r}")
        return value
    raise TypeError(f"config type {tp!r} at {key} is not supported by graftbench.config")
