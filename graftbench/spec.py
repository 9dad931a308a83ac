"""The suite's config: one base per task (tasks/<task>.yaml) with presets per profile.

The workflow config has a few top-level keys (profile, tasks, device) plus one section per
task file:

    unconditional:
      base: {...}                      # every field, sized for the cpu profile
      profiles: {smoke: {...}, ...}    # differences from base, merged key by key

`resolve(config, task)` merges base with the active profile's preset and parses the result
into the task's typed config, so a bad key fails here, before any compute, naming the key.
The JSON schema the workflow validates against (config/schema.yaml) is generated from the
same dataclasses by `python -m graftbench schema`, so the two cannot drift apart.
"""

from __future__ import annotations

import ast
import copy
import dataclasses
import inspect
import re
import textwrap
import tokenize
import types
import typing
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, get_args, get_origin

from graftbench.config import ConfigError, Count, Items, Range, parse, to_dict

PROFILES = ("smoke", "cpu", "paper")


@dataclass
class SuiteConfig:
    """Top-level workflow keys."""

    profile: Literal["smoke", "cpu", "paper"] = "cpu"  # which preset of every task to run
    tasks: Annotated[list[str], Items(1, distinct=True)] = field(
        default_factory=lambda: ["unconditional"]
    )  # tasks to run
    device: str = "cpu"  # torch device for every verb ("cpu", "cuda", "cuda:1")
    gpus_per_job: Count = 1  # ranks of each fine-tuning job, one GPU each: above 1 the job is
    # launched with torchrun and the loop splits every round's prompts across the ranks
    # (needs device cuda; the job asks Snakemake for that many of its `gpu` resource)
    results: str = "results"  # root folder of all outputs

    def finetune_command(self, python: str) -> str:
        """How a fine-tuning rule starts `graftbench`: plainly, or under torchrun."""
        if self.gpus_per_job == 1:
            return f"{python} -m graftbench"
        # `--` ends torchrun's options: its parser would take our --run for its --run-path
        return (
            f"{python} -m torch.distributed.run --standalone --nproc-per-node "
            f"{self.gpus_per_job} -m -- graftbench"
        )

    def finetune_gpus(self) -> int:
        """The `gpu` resource of a fine-tuning job: its ranks, none on the CPU."""
        return 0 if self.device == "cpu" else self.gpus_per_job


def task_configs() -> dict[str, type]:
    """Task name -> typed config dataclass, from the task registry (`graftbench.tasks`)."""
    from graftbench import tasks

    return {name: tasks.get(name).config for name in tasks.names()}


def suite(config: dict) -> SuiteConfig:
    top = {
        k: v for k, v in config.items() if k in {f.name for f in dataclasses.fields(SuiteConfig)}
    }
    unknown = sorted(set(config) - set(top) - set(task_configs()))
    if unknown:
        allowed = sorted([f.name for f in dataclasses.fields(SuiteConfig)] + list(task_configs()))
        raise ConfigError(f"{unknown[0]}: unknown key; allowed keys are {', '.join(allowed)}")
    cfg = parse(SuiteConfig, top)
    if not re.fullmatch(r"cpu|cuda(:\d+)?|mps", cfg.device):
        raise ConfigError(
            f"device: {cfg.device!r} is not a torch device; use cpu, cuda, cuda:N or mps"
        )
    if cfg.gpus_per_job > 1 and cfg.device != "cuda":
        raise ConfigError(
            f"gpus_per_job: {cfg.gpus_per_job} ranks need device: cuda (each rank "
            f"takes its own GPU), not {cfg.device!r}"
        )
    for t in cfg.tasks:
        if t not in task_configs():
            raise ConfigError(
                f"tasks: {t!r} is not a task; choose from {', '.join(task_configs())}"
            )
        if t not in config:
            raise ConfigError(f"{t}: task is enabled but its spec (tasks/{t}.yaml) was not loaded")
    return cfg


def resolve(config: dict, task: str) -> Any:
    """Typed config of `task` for the active profile (base deep-merged with the preset)."""
    profile = suite(config).profile
    return parse(task_configs()[task], merge(*_base_and_presets(config, task, profile)), task)


def check_task(config: dict, task: str) -> None:
    """Parse the task's base, then base + each preset, so that a bad key anywhere (not only
    in the active profile's preset) fails naming its full path, e.g. t2i.profiles.smoke.seeds."""
    cls = task_configs()[task]
    base, _ = _base_and_presets(config, task, "cpu")
    parse(cls, base, f"{task}.base")
    for name, preset in (config[task].get("profiles") or {}).items():
        parse(cls, merge(base, preset or {}), f"{task}.profiles.{name}")


def _base_and_presets(config: dict, task: str, profile: str) -> tuple[dict, dict]:
    """The task section's base and the preset of `profile` ({} if none), keys checked."""
    section = config[task]
    if not isinstance(section, dict):
        raise ConfigError(f"{task}: expected a mapping with base and profiles, got {section!r}")
    unknown = sorted(set(section) - {"base", "profiles"})
    if unknown:
        raise ConfigError(f"{task}.{unknown[0]}: unknown key; allowed keys are base, profiles")
    presets = section.get("profiles") or {}
    for name, preset in presets.items():
        if name not in PROFILES:
            raise ConfigError(
                f"{task}.profiles.{name}: unknown profile; choose one of {', '.join(PROFILES)}"
            )
        if not isinstance(preset, dict | None):
            raise ConfigError(f"{task}.profiles.{name}: expected a mapping, got {preset!r}")
    base = section.get("base") or {}
    if not isinstance(base, dict):
        raise ConfigError(f"{task}.base: expected a mapping, got {base!r}")
    return base, presets.get(profile) or {}


def merge(base: dict, over: dict) -> dict:
    """Deep merge: mappings merge key by key, anything else in `over` replaces."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def json_schema() -> dict:
    """JSON schema of the whole workflow config, derived from the dataclasses: every key with
    its type, default and description (the comment beside the field in the source, as
    STYLE.md asks fields to be documented), each config class once under $defs."""
    defs: dict = {}
    props = {f.name: _property(f, h, defs) for f, h in _fields(SuiteConfig)}
    props["tasks"]["items"] = {"enum": list(task_configs())}
    for name, cls in task_configs().items():
        ref = {"$ref": f"#/$defs/{_def(cls, defs)}"}  # no required keys: presets hold differences
        props[name] = {
            "type": "object",
            "description": f"the {name} task (tasks/{name}.yaml): settings and presets",
            "additionalProperties": False,
            "properties": {
                "base": {**ref, "description": "every setting, sized for the cpu profile"},
                "profiles": {
                    "type": "object",
                    "description": "per profile, the settings that differ from base",
                    "additionalProperties": False,
                    "properties": {
                        p: {"oneOf": [{"type": "null"}, ref], "description": f"the {p} preset"}
                        for p in PROFILES
                    },
                },
            },
        }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "description": "graftbench workflow config (generated by `python -m graftbench schema`; do not edit)",
        "type": "object",
        "additionalProperties": False,
        "properties": props,
        "$defs": dict(sorted(defs.items())),
    }


def _fields(cls):
    hints = typing.get_type_hints(cls, include_extras=True)
    return [(f, hints[f.name]) for f in dataclasses.fields(cls) if f.init]


def _def(cls: type, defs: dict) -> str:
    """The $defs name of config class `cls`, its schema added on first use."""
    name = f"{cls.__module__.removeprefix('graftbench.')}.{cls.__qualname__}"
    if name not in defs:
        defs[name] = {}  # reserved first: a class may (indirectly) contain itself
        docs = field_docs(cls)
        defs[name] = {
            "type": "object",
            "additionalProperties": False,
            "properties": {f.name: _property(f, h, defs, docs) for f, h in _fields(cls)},
        }
    return name


def _property(field: dataclasses.Field, tp: Any, defs: dict, docs: dict | None = None) -> dict:
    out = _schema(tp, defs)
    docs = field_docs(SuiteConfig) if docs is None else docs
    out["description"] = docs.get(field.name, "")
    if field.default is not dataclasses.MISSING:
        out["default"] = to_dict(field.default)
    elif field.default_factory is not dataclasses.MISSING:
        out["default"] = to_dict(field.default_factory())
    return out


def field_docs(cls: type) -> dict[str, str]:
    """Field name -> its comment in the source of `cls` and its bases: the comments on the
    field's lines and the comment lines right below it (a dataclass keeps no field docs)."""
    out: dict[str, str] = {}
    for klass in reversed([k for k in cls.__mro__ if dataclasses.is_dataclass(k)]):
        source = textwrap.dedent("".join(inspect.getsourcelines(klass)[0]))
        lines = source.splitlines()
        comments = {  # source line number -> its comment ('#' inside a string is not one)
            t.start[0]: t.string[1:].strip()
            for t in tokenize.generate_tokens(iter(source.splitlines(True)).__next__)
            if t.type == tokenize.COMMENT
        }
        for node in ast.parse(source).body[0].body:
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                end = node.end_lineno
                while end < len(lines) and lines[end].strip().startswith("#"):
                    end += 1  # the comment lines right below continue it
                text = (comments.get(n, "") for n in range(node.lineno, end + 1))
                out[node.target.id] = " ".join(t for t in text if t)
    return out


def _schema(tp: Any, defs: dict) -> dict:
    origin = get_origin(tp)
    if origin is Annotated:  # a bounded type of graftbench.config (Count, Seeds, ...)
        base, *marks = get_args(tp)
        out = _schema(base, defs)
        for mark in marks:
            out |= _bounds(mark)
        return out
    if dataclasses.is_dataclass(tp):
        return {"$ref": f"#/$defs/{_def(tp, defs)}"}
    if origin is Literal:
        return {"enum": list(get_args(tp))}
    if origin in (typing.Union, types.UnionType):
        return {"anyOf": [_schema(a, defs) for a in get_args(tp)]}
    if origin in (list, tuple):
        return {"type": "array", "items": _schema(get_args(tp)[0], defs)}
    if origin is dict:
        return {"type": "object"}
    simple = {int: "integer", float: "number", str: "string", bool: "boolean", type(None): "null"}
    if tp in simple:
        return {"type": simple[tp]}
    return {}


def _bounds(mark: Range | Items) -> dict:
    """JSON-schema keywords of a bound of graftbench.config."""
    if isinstance(mark, Items):
        return {"minItems": mark.min} | ({"uniqueItems": True} if mark.distinct else {})
    out = {}
    if mark.min is not None:
        out["exclusiveMinimum" if mark.open_min else "minimum"] = mark.min
    if mark.max is not None:
        out["exclusiveMaximum" if mark.open_max else "maximum"] = mark.max
    return out
