"""graftbench.config.parse: unknown keys and wrong types fail with the key path and choices."""

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Literal

import pytest

from graftbench.config import ConfigError, parse, to_dict

# Module-level on purpose: parse resolves annotations with typing.get_type_hints, which
# looks names up in the module's globals.


@dataclass
class Solver:
    name: Literal["euler", "heun"] = "euler"
    steps: int = 10
    scale: float = 1.0


@dataclass
class Sample:
    solver: Solver = field(default_factory=Solver)
    sizes: list[int] = field(default_factory=lambda: [8])
    seed: int | None = None
    channels: Literal[1, 3] = 1


@dataclass
class Run:
    tag: str  # required
    sample: Sample = field(default_factory=Sample)
    extras: list[Solver] = field(default_factory=list)


def _raises(data, message):
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
        parse(Run, data)


def test_full_config_parses_to_nested_dataclasses():
    data = {
        "tag": "smoke",
        "sample": {"solver": {"name": "heun", "steps": 4, "scale": 2}, "sizes": [1, 2, 3]},
        "extras": [{"steps": 1}],
    }
    run = parse(Run, data)
    assert run == Run(
        tag="smoke",
        sample=Sample(solver=Solver("heun", 4, 2.0), sizes=[1, 2, 3]),
        extras=[Solver(steps=1)],
    )
    assert type(run.sample.solver.scale) is float
    assert parse(Run, to_dict(run)) == run  # the resolved config written to disk reloads


def test_defaults_fill_missing_optional_keys():
    assert parse(Run, {"tag": "x"}) == Run(tag="x")


@pytest.mark.parametrize(
    "data, path",
    [
        ({"tag": "x", "colour": 1}, "colour"),
        ({"tag": "x", "sample": {"solvr": {}}}, "sample.solvr"),
        ({"tag": "x", "sample": {"solver": {"order": 2}}}, "sample.solver.order"),
        ({"tag": "x", "extras": [{}, {"step": 2}]}, "extras[1].step"),
    ],
)
def test_unknown_key_names_full_path_and_allowed_keys(data, path):
    leaf_cls = {"": Run, "sample": Sample}.get(path.rpartition(".")[0], Solver)
    allowed = ", ".join(sorted(f.name for f in dataclasses.fields(leaf_cls)))
    _raises(data, f"{path}: unknown key; allowed keys are {allowed}")


def test_bad_literal_names_allowed_values():
    _raises(
        {"tag": "x", "sample": {"solver": {"name": "rk4"}}},
        "sample.solver.name: 'rk4' is not allowed; choose one of 'euler', 'heun'",
    )
    _raises(
        {"tag": "x", "sample": {"channels": 2}},
        "sample.channels: 2 is not allowed; choose one of 1, 3",
    )


@pytest.mark.parametrize("value", [True, 3.0])
def test_literal_of_ints_rejects_bool_and_float(value):
    with pytest.raises(ConfigError, match="sample.channels"):
        parse(Run, {"tag": "x", "sample": {"channels": value}})


@pytest.mark.parametrize("value", [True, False, "8", 8.0, None, [8]])
def test_int_field_rejects_non_int(value):
    _raises(
        {"tag": "x", "sample": {"solver": {"steps": value}}},
        f"sample.solver.steps: expected int, got {value!r}",
    )


@pytest.mark.parametrize("value, expected", [(2, 2.0), (0, 0.0), (-3, -3.0), (0.5, 0.5)])
def test_float_field_accepts_int(value, expected):
    scale = parse(Solver, {"scale": value}).scale
    assert scale == expected and type(scale) is float


@pytest.mark.parametrize("value", [True, "1.0", None])
def test_float_field_rejects_bool_and_str(value):
    with pytest.raises(ConfigError, match=re.escape(f"scale: expected float, got {value!r}")):
        parse(Solver, {"scale": value})


def test_list_of_int_checks_every_item():
    assert parse(Sample, {"sizes": []}).sizes == []
    assert parse(Sample, {"sizes": (4, 5)}).sizes == [4, 5]
    _raises({"tag": "x", "sample": {"sizes": [1, True]}}, "sample.sizes[1]: expected int, got True")
    _raises({"tag": "x", "sample": {"sizes": 8}}, "sample.sizes: expected a list, got 8")


def test_optional_int():
    assert parse(Sample, {"seed": None}).seed is None
    assert parse(Sample, {"seed": 3}).seed == 3
    with pytest.raises(ConfigError, match="seed: expected int, got True"):
        parse(Sample, {"seed": True})


def test_missing_required_key():
    _raises({}, "tag: required key is missing")
    _raises({"sample": {}}, "tag: required key is missing")


def test_non_mapping_is_rejected_with_its_path():
    _raises([1], "<root>: expected a mapping, got list")
    _raises(
        {"tag": "x", "sample": {"solver": "euler"}}, "sample.solver: expected a mapping, got str"
    )


def test_every_schema_key_has_a_description_and_every_setting_its_default():
    """config/schema.yaml documents every key (from the comment beside its field), and each
    setting's default is the typed config's, so the schema is the config's reference."""
    import yaml

    from graftbench.spec import SuiteConfig, json_schema
    from graftbench.tasks.t2i.config import T2IConfig
    from tests.conftest import ROOT

    schema = json_schema()
    keys = []

    def walk(node: dict, path: str) -> None:
        for name, prop in node.get("properties", {}).items():
            keys.append((f"{path}.{name}", prop))
            walk(prop, f"{path}.{name}")

    walk(schema, "")
    for name, d in schema["$defs"].items():
        walk(d, name)
    assert len(keys) > 300
    assert [k for k, p in keys if not p.get("description")] == []
    # settings: the config classes' fields (under $defs) and the top-level keys, not the
    # task sections that hold them (t2i: base, profiles)
    top = {f".{f.name}" for f in dataclasses.fields(SuiteConfig)}
    settings = [k for k, p in keys if not k.startswith(".") or k in top]
    assert [k for k in settings if "default" not in dict(keys)[k]] == []
    t2i = schema["$defs"]["tasks.t2i.config.T2IConfig"]["properties"]
    default = next(f.default for f in dataclasses.fields(T2IConfig) if f.name == "finetune_prompts")
    assert t2i["finetune_prompts"]["default"] == default
    assert (
        "training prompts the fine-tuning loop draws from" in t2i["finetune_prompts"]["description"]
    )
    # the committed file is this schema (test_workflow checks it byte for byte too)
    assert yaml.safe_load((ROOT / "config/schema.yaml").read_text()) == schema


def _layout_cpu(**over):
    """The layout task's cpu config (tasks/layout.yaml) with `over` merged into its base."""
    from pathlib import Path

    import yaml

    from graftbench import spec

    data = yaml.safe_load((Path(__file__).parents[1] / "tasks/layout.yaml").read_text())
    data["layout"]["base"] = spec.merge(data["layout"]["base"], over)
    return spec.resolve({"profile": "cpu", "tasks": ["layout"], **data}, "layout")


def test_every_method_samples_its_rounds_with_the_same_sampler_but_ddpo_its_eta():
    assert _layout_cpu().ddpo.loop.eta == 1.0 and _layout_cpu().graft.loop.eta == 0.0
    with pytest.raises(ConfigError, match=r"layout.graft_threshold.loop.eta: 1.0 differs from"):
        _layout_cpu(graft_threshold={"loop": {"eta": 1.0}})
    with pytest.raises(ConfigError, match=r"layout.ddpo.loop.num_steps: 10 differs from"):
        _layout_cpu(ddpo={"loop": {"num_steps": 10}})


def test_self_fit_must_keep_every_sample():
    with pytest.raises(ConfigError, match=r"layout.self_fit.selection.rule: 'top_k' must be"):
        _layout_cpu(self_fit={"selection": {"rule": "top_k"}})
