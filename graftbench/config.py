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
from typing import Any, Literal, TypeVar, get_args, get_origin

T = TypeVar("T")


class ConfigError(ValueError):
    """A config value that the suite cannot run with; the message names the key."""


class InputError(ValueError):
    """A user-supplied file the suite cannot read; the message names the file (and line)."""


def parse(cls: type[T], data: Any, path: str = "") -> T:
    """Build dataclass `cls` from a mapping, checking keys and types recursively."""
    if not isinstance(data, dict):
        raise ConfigError(f"{path or '<root>'}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
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
        values[name] = _coerce(hints[name], data[name], key)
    return cls(**values)


def check_at_least(cfg: Any, path: str, minimum: int, *keys: str) -> None:
    """A ConfigError naming the first of dataclass `cfg`'s fields `keys` below `minimum`."""
    for key in keys:
        if (value := getattr(cfg, key)) < minimum:
            raise ConfigError(f"{_join(path, key)}: {value} must be at least {minimum}")


def to_dict(obj: Any) -> Any:
    """Plain-JSON view of a (nested) config dataclass."""
    return dataclasses.asdict(obj) if dataclasses.is_dataclass(obj) else obj


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _coerce(tp: Any, value: Any, key: str) -> Any:
    origin = get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return parse(tp, value, key)
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
                return _coerce(arg, value, key)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0])
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        (item,) = get_args(tp)[:1] or (Any,)
        out = [_coerce(item, v, f"{key}[{i}]") for i, v in enumerate(value)]
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
