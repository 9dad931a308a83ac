"""The workflow's config checks, run by the Snakefile before it plans a job.

Every mistake ends in one line on stderr that names the file, the full key path and what is
allowed (exit status 2), for every key of the base and of every preset, not only the active
profile's:

    config error: tasks/t2i.yaml: t2i.profiles.smoke.seeds[1]: expected int, got 'a'

The typed checks (`graftbench.config.parse`) run first, since their messages name the key;
the JSON schema (config/schema.yaml, generated from the same dataclasses) then runs as a
second net, its first error also reduced to one line.
"""

from __future__ import annotations

import functools
import os
import re
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import yaml

from graftbench.config import ConfigError, InputError
from graftbench.spec import SuiteConfig, check_task, suite, task_configs

COMMAND_LINE = "--config"  # where a key given as `--config key=value` came from


@contextmanager
def exit_on_error() -> Iterator[None]:
    """Turn a config or input error into one line on stderr and exit status 2 (Snakemake
    passes a SystemExit from the Snakefile through without a traceback)."""
    try:
        yield
    except (ConfigError, InputError) as err:
        print(f"config error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


def load_yaml(path: str | Path) -> dict:
    """A YAML config file, or an InputError naming its file, line and column (Snakemake's
    own message names neither)."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        raise InputError(
            f"{path}:{mark.line + 1}:{mark.column + 1}: not valid YAML: {err.problem}"
        ) from None
    except yaml.YAMLError as err:
        raise InputError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a mapping of keys at the top, got {data!r}")
    return data


def command_line_sources(configfiles: list, overrides: Mapping) -> list[tuple[str, Mapping]]:
    """(name, contents) of the `--configfile`s, then `--config`'s settings (named so)."""
    out = []
    for path in configfiles:
        rel = os.path.relpath(path)  # as the user would name it, inside the repository
        out.append((str(path) if rel.startswith("..") else rel, load_yaml(path)))
    return [*out, (COMMAND_LINE, dict(overrides))]


def check(config: dict, sources: list[tuple[str, Mapping]], schema: str | Path) -> SuiteConfig:
    """Every check of the workflow config; a ConfigError names the source that set the key.

    sources: (name, contents) of every config file and the command line's --config, in the
    order Snakemake merged them (later ones win)."""
    try:
        cfg = suite(config)
        for task in task_configs():
            if task in config:
                check_task(config, task)
        _check_schema(config, schema)
    except ConfigError as err:
        raise ConfigError(f"{locate(str(err), sources)}: {err}") from None
    return cfg


def missing_files(config: dict, cfg: SuiteConfig) -> None:
    """An InputError listing every file the enabled tasks' configs read that is missing
    (`user_files()` of each task config: data, weights, prompt sets you supply)."""
    from graftbench.spec import resolve

    missing = [
        f"{task}: {path}"
        for task in cfg.tasks
        for path in getattr(resolve(config, task), "user_files", list)()
        if not Path(path).exists()
    ]
    if missing:
        raise InputError(
            f"the {cfg.profile} profile reads files you supply that are missing: "
            f"{'; '.join(missing)} (README, 'Paper scale')"
        )


def locate(message: str, sources: list[tuple[str, Mapping]]) -> str:
    """The source that set the key a message starts with (the last that has it, as the last
    wins), or the one that has the longest part of its path."""
    key = message.split(":")[0].split(" ")[0]
    parts = [p for p in re.split(r"[.\[\]]", key) if p and not p.isdigit()]
    best, depth = sources[0][0] if sources else "config", -1
    for name, data in sources:
        found = 0
        for part in parts:
            if not isinstance(data, Mapping) or part not in data:
                break
            data, found = data[part], found + 1
        if found >= depth and found > 0:
            best, depth = name, found
    return best


@functools.cache
def _validator(schema: str):
    """A validator of the schema file (read once: it is 6,000 lines of YAML)."""
    import jsonschema

    spec = yaml.load(Path(schema).read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    return jsonschema.validators.validator_for(spec)(spec)


def _check_schema(config: dict, schema: str | Path) -> None:
    """The JSON schema's first error, as one line naming the key path."""
    import jsonschema

    validator = _validator(str(schema))
    error = jsonschema.exceptions.best_match(validator.iter_errors(config))
    if error is not None:
        where = error.json_path.removeprefix("$").removeprefix(".") or "<root>"
        raise ConfigError(f"{where}: {error.message[:200]}")
