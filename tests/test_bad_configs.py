"""Bad configs generated from the schema itself: for every key of config/schema.yaml, in a
task's base and in a preset, a wrong type, an out-of-range value (where the key is bounded)
and an unknown key beside it. Each must end in exit status 2 and one line on stderr that
names the file and the full key path, before any job starts.

Every case goes through the workflow's own check (`graftbench.workflow_config`, as the
Snakefile calls it); a sample of one case per kind also goes through Snakemake itself, which
must leave nothing under results/.
"""

from __future__ import annotations

import copy
import functools

import pytest
import yaml

from graftbench.workflow_config import check, exit_on_error
from tests.conftest import ROOT, copy_workflow, snakemake, workflow_config

SCHEMA = ROOT / "config/schema.yaml"
PRESET = "smoke"  # the preset the preset cases go into


@functools.cache
def schema() -> dict:
    return yaml.load(SCHEMA.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


@functools.cache
def cpu_config() -> dict:
    return workflow_config("cpu")


def _resolve(node: dict) -> dict:
    ref = node.get("$ref")
    return schema()["$defs"][ref.split("/")[-1]] if ref else node


def keys() -> list[tuple[tuple, dict]]:
    """(path, schema node) of every key, each config class's keys once, at the first path
    that reaches the class (tasks first, in registry order), plus the top-level keys."""
    out, seen = [], set()
    top = schema()["properties"]

    def walk(path: tuple, node: dict) -> None:
        ref = node.get("$ref") or next(
            (a["$ref"] for a in node.get("anyOf", []) + node.get("oneOf", []) if "$ref" in a),
            None,
        )
        if ref is None:
            return
        name = ref.split("/")[-1]
        if name in seen:
            return
        seen.add(name)
        out.append((path + ("<unknown>",), {}))
        for key, child in _resolve({"$ref": ref})["properties"].items():
            out.append((path + (key,), child))
            walk(path + (key,), child)

    for key, node in top.items():
        if "properties" in node:  # a task section: its base reaches every class
            walk((key,), node["properties"]["base"])
        else:
            out.append(((key,), node))
    return out


def wrong_type(node: dict):
    """A value of the wrong type for the key (None where the key takes anything)."""
    kinds = {a.get("type") for a in node.get("anyOf", [node])} - {"null"}
    if "enum" in node or "$ref" in node:
        return "not-a-choice" if "enum" in node else 7
    if kinds & {"integer", "number", "boolean", "array", "object", None}:  # None: a $ref
        return "x"
    if kinds == {"string"}:
        return 7
    return None


def out_of_range(node: dict) -> list:
    """Values just outside every bound the key declares."""
    out = []
    step = 1 if node.get("type") == "integer" else 0.5
    if "minimum" in node:
        out.append(node["minimum"] - step)
    if "exclusiveMinimum" in node:
        out.append(node["exclusiveMinimum"])
    if "maximum" in node:
        out.append(node["maximum"] + step)
    if "exclusiveMaximum" in node:
        out.append(node["exclusiveMaximum"])
    if node.get("minItems"):
        out.append([])
    if node.get("uniqueItems") and node.get("default"):
        out.append([node["default"][0]] * 2)
    return out


def cases() -> list[tuple[str, tuple, object]]:
    """(where: base or preset, key path, bad value) for every key and kind of mistake."""
    out = []
    for path, node in keys():
        values = [object()] if path[-1] == "<unknown>" else [wrong_type(node)]
        values = [v for v in values if v is not None] + out_of_range(node)
        for v in values:
            wheres = ["top"] if len(path) == 1 else ["base", "preset"]
            out += [(where, path, v) for where in wheres]
    return out


def planted(where: str, path: tuple, value) -> tuple[dict, dict, str, str]:
    """The cpu config with the mistake planted (holding only the task the mistake is in, so
    that a thousand cases check in seconds); the file it is in; the key its message must
    name."""
    config = copy.deepcopy(cpu_config())
    if len(path) > 1:
        config = {k: v for k, v in config.items() if k == path[0] or k not in TASKS}
        config["tasks"] = [path[0]]
    if where == "top":
        edit, file, named = {path[0]: value}, "config/config.yaml", path[0]
    else:
        task, *rest = path
        level = ["base"] if where == "base" else ["profiles", PRESET]
        edit = node = {}
        for key in [task, *level, *rest[:-1]]:
            node = node.setdefault(key, {})
        last = "zz_unknown" if rest[-1] == "<unknown>" else rest[-1]
        node[last] = 1 if rest[-1] == "<unknown>" else value
        file, named = f"tasks/{task}.yaml", ".".join([task, *level, *rest[:-1], last])
    return _merged(config, edit), edit, file, named


def _merged(config: dict, edit: dict) -> dict:
    out = copy.deepcopy(config)
    for k, v in edit.items():
        out[k] = _merged(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _id(case) -> str:
    where, path, value = case
    return f"{where}:{'.'.join(path)}={value!r}"[:80]


CASES = cases()
TASKS = [k for k, n in schema()["properties"].items() if "properties" in n]


def test_the_cases_cover_every_key_of_the_schema():
    defs = schema()["$defs"]
    total = sum(len(d["properties"]) for d in defs.values()) + sum(
        1 for n in schema()["properties"].values() if "properties" not in n
    )
    covered = {(w, p) for w, p, _ in CASES}
    named = {p for _, p in covered if p[-1] != "<unknown>"}
    assert len(named) == total  # each key of each config class, once
    assert {p for w, p in covered if w == "base"} == {p for w, p in covered if w == "preset"}
    bounded = [p for p, n in keys() if out_of_range(n)]
    assert len(bounded) > 150  # the counts, sizes, rates and seeds of every task


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_a_bad_config_fails_in_one_line_naming_file_and_key(case, capsys):
    config, edit, file, named = planted(*case)
    sources = [(file, edit)]
    with pytest.raises(SystemExit) as stop, exit_on_error():
        check(config, sources, SCHEMA)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith(f"config error: {file}: "), err
    assert named in err or named.replace(".<unknown>", "") in err, err


def test_the_good_config_passes():
    for profile in ("smoke", "cpu", "paper"):
        config = workflow_config(profile)
        check(config, [("config/config.yaml", config)], SCHEMA)


# One case of each kind through Snakemake itself (a few seconds each).
SAMPLE = [
    ("preset", ("t2i", "seeds"), [0, 0]),
    ("base", ("molecule", "graft", "loop", "num_steps"), 0),
    ("preset", ("layout", "evaluate", "<unknown>"), 1),
    ("base", ("unconditional", "sample", "solver"), "rk4"),
    ("top", ("tasks",), []),
]


@pytest.mark.workflow
@pytest.mark.parametrize("case", SAMPLE, ids=_id)
def test_snakemake_stops_before_any_job(case, tmp_path):
    _, edit, _, named = planted(*case)
    wf = copy_workflow(tmp_path / "wf")
    (wf / "bad.yaml").write_text(yaml.safe_dump(edit))
    run = snakemake(wf, "--cores", "1", "--configfile", "bad.yaml", timeout=120)
    assert run.returncode == 2, run.stderr
    assert run.stderr.count("\n") == 1 and run.stderr.startswith("config error: bad.yaml: ")
    assert named.replace(".zz_unknown", "") in run.stderr
    assert not (wf / "results").exists()


@pytest.mark.workflow
def test_a_yaml_mistake_names_file_line_and_column(tmp_path):
    wf = copy_workflow(tmp_path / "wf")
    spec = wf / "tasks/toy2d.yaml"
    spec.write_text(spec.read_text() + "  broken: [1, 2\n")
    run = snakemake(wf, "--cores", "1", "-n", timeout=120)
    assert run.returncode == 2
    line = len(spec.read_text().splitlines())
    assert run.stderr.startswith(f"config error: tasks/toy2d.yaml:{line + 1}:"), run.stderr
    assert run.stderr.count("\n") == 1


# The rules a schema cannot express (cross-field, or a pattern), through the same check.
@pytest.mark.parametrize(
    "override, expected",
    [
        ({"device": "gpu"}, "device: 'gpu' is not a torch device"),
        ({"gpus_per_job": 2}, "gpus_per_job: 2 ranks need device: cuda"),
        ({"tasks": ["unconditional", "video"]}, "tasks: 'video' is not a task"),
        ({"unconditional": {"profiles": {"gpu": {}}}}, "unconditional.profiles.gpu: unknown"),
        (
            {"unconditional": {"base": {"sample": {"solver": "heun"}}}},
            "unconditional.base.sample.solver: 'heun' cannot be used with method 'inc'",
        ),
        (
            {"unconditional": {"profiles": {"smoke": {"inc": {"base_steps": [12]}}}}},
            "unconditional.profiles.smoke.inc.base_steps: 12 is not in",
        ),
        (
            {"unconditional": {"base": {"inc": {"model": {"in_channels": 3}}}}},
            "unconditional.base.inc.model.in_channels: 3 must equal",
        ),
        (
            {"molecule": {"profiles": {"paper": {"pgraft": {"loop": {"num_steps": 7}}}}}},
            "molecule.profiles.paper.pgraft.intermediate_steps: 8 must lie in",
        ),
    ],
)
def test_cross_field_rules_name_the_full_key(override, expected, capsys):
    config = _merged(cpu_config(), override)
    if "methods" not in str(override):
        config["unconditional"]["base"]["methods"] = ["base", "inc"]
    with pytest.raises(SystemExit), exit_on_error():
        check(config, [("bad.yaml", override)], SCHEMA)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("config error: bad.yaml: "), err
    assert expected in err, err
