"""The task registry: `python -m graftbench <verb> --task X`, the workflow config and its schema
find every task here.

A task is one package under graftbench/tasks/ whose `TASK` is a `Task`: its typed config,
the verbs it offers and, for a reward fine-tuning task, its `finetuning.task.FinetuneTask`
(which gives it the shared evaluate-model and finetune verbs). Add the package to `BUILTIN`,
or call `register` with a `Task` defined anywhere (tests/test_new_task.py does).
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

# verb -> fn(typed config (None for verbs without --config), parsed command-line arguments)
Verb = Callable[[Any, argparse.Namespace], None]

BUILTIN = {
    "unconditional": "graftbench.tasks.unconditional",
    "t2i": "graftbench.tasks.t2i",
    "layout": "graftbench.tasks.layout",
    "molecule": "graftbench.tasks.molecule",
    "toy2d": "graftbench.tasks.toy2d",
}
_registered: dict[str, Task] = {}


@dataclass(frozen=True)
class Task:
    name: str
    summary: str  # one line, shown by --help
    config: type  # the typed config dataclass (graftbench.config.parse builds it)
    verbs: Mapping[str, Verb]  # the verbs the task offers
    finetune: Any = None  # its FinetuneTask, for a reward fine-tuning task
    config_keys: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # workflow step
    # (data, features, pretrain, evaluate) -> the config keys its outputs depend on: editing
    # one reruns the step (rules/common.smk, `config_slice`)
    hints: Mapping[str, str] = field(default_factory=dict)  # verb it lacks -> what instead


def names() -> list[str]:
    """Every task's name: the built-in ones, then those registered."""
    return [*BUILTIN, *(n for n in _registered if n not in BUILTIN)]


def get(name: str) -> Task:
    """The task called `name` (a KeyError naming the known ones otherwise)."""
    if name in _registered:
        return _registered[name]
    if name not in BUILTIN:
        raise KeyError(f"{name!r} is not a task; choose from {', '.join(names())}")
    task = importlib.import_module(BUILTIN[name]).TASK
    _registered[name] = task
    return task


def register(task: Task) -> Task:
    """Make `task` known by its name (replacing one of that name)."""
    _registered[task.name] = task
    return task


def offering(verb: str) -> list[str]:
    """The names of the tasks that offer `verb`."""
    return [n for n in names() if verb in get(n).verbs]
