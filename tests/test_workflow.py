"""The whole workflow on the smoke profile, the linter, and config errors at load time.

Each test runs Snakemake on a copy of the workflow files in a temporary folder, so it never
touches the user's results/ or .snakemake/ locks; the smoke run is one for the session
(conftest's `smoke_run`), which these tests read and never change.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from graftbench.tasks.t2i.scenes import CATEGORIES
from tests.conftest import ROOT, SNAKEMAKE, copy_workflow, snakemake


@pytest.mark.workflow
def test_smoke_profile_runs_end_to_end(smoke_run, tmp_path):
    wf = smoke_run  # the session's one smoke run (conftest)
    tables = wf / "results/smoke/tables"
    df = pd.read_csv(tables / "unconditional.csv")
    smoke = yaml.safe_load((wf / "tasks/unconditional.yaml").read_text())["unconditional"][
        "profiles"
    ]["smoke"]
    assert sorted(df["steps"]) == sorted(smoke["sample"]["steps"])
    assert (df["n_seeds"] == len(smoke["seeds"])).all()
    assert (df["flops_per_image_mean"] > 0).all() and df["fid.trained-cnn_mean"].notna().all()
    # more steps cost proportionally more FLOPs
    by_steps = df.set_index("steps")["flops_per_image_mean"]
    assert by_steps.max() / by_steps.min() == pytest.approx(
        by_steps.index.max() / by_steps.index.min()
    )
    assert (wf / "results/smoke/figures/unconditional_fid_vs_flops.png").stat().st_size > 1000
    assert "trained-cnn" in (tables / "unconditional.md").read_text()
    assert set(df["method"]) == {"base"}  # base + INC rows go to their own table
    # inverse noise correction: base and base + INC side by side, FLOPs counting both networks
    inc = pd.read_csv(tables / "inc.csv")
    assert set(inc["method"]) == {"base", "inc"}
    rows = inc[inc["method"] == "inc"]
    assert sorted(rows["steps"].unique()) == sorted(smoke["inc"]["base_steps"])
    assert sorted(rows["corrector_steps"].unique()) == sorted(smoke["inc"]["corrector_steps"])
    assert rows["fid.trained-cnn_mean"].notna().all() and rows["energy_to_corrector"].notna().all()
    base = inc[inc["method"] == "base"].set_index("steps")["flops_per_image_mean"]
    for _, r in rows.iterrows():  # base FLOPs at the same steps plus a positive corrector share
        assert r["flops_per_image_mean"] > base[r["steps"]]
        assert r["nfe_mean"] == r["steps"] + r["corrector_steps"]
    assert (wf / "results/smoke/figures/inc_fid_vs_flops.png").stat().st_size > 1000
    assert "paper anchor" in (tables / "inc.md").read_text()
    # text-to-image: every run of every method, at equal reward queries, with the figures
    t2i = pd.read_csv(tables / "t2i.csv")
    t2i_smoke = yaml.safe_load((wf / "tasks/t2i.yaml").read_text())["t2i"]["profiles"]["smoke"]
    n_i = t2i_smoke["pgraft"]["intermediate_steps"]
    pgraft = [f"pgraft{n}" for n in n_i]
    assert list(t2i["run"]) == ["base", "graft", "self_fit", *pgraft, "ddpo", "best_of_m"]
    assert (t2i["n_seeds"] == len(t2i_smoke["seeds"])).all()
    tuned = t2i[~t2i["run"].isin(["base", "best_of_m"])]
    assert (tuned["reward_queries_mean"] == t2i_smoke["graft"]["loop"]["reward_budget"]).all()
    assert (tuned["sampler_nfe_mean"] > 0).all() and (tuned["train_flops_mean"] > 0).all()
    assert t2i["heldout_reward_mean"].between(0, 1).all() and t2i["diversity_mean"].notna().all()
    per_category = [
        c[: -len("_mean")]
        for c in t2i.columns
        if c.startswith("heldout_acc_") and c.endswith("_mean")
    ]
    assert per_category == [f"heldout_acc_{c}" for c in CATEGORIES]  # the grammar's order
    for name in ("t2i_reward_vs_queries", "t2i_pgraft_vs_ni", "t2i_samples"):
        assert (wf / f"results/smoke/figures/{name}.png").stat().st_size > 1000
    assert "P-GRAFT +8.81%" in (tables / "t2i.md").read_text()
    # the training reward's change, paired with the base: the base's is 0, and the table's mean
    # is each run's train_reward minus the base's (same seeds)
    assert t2i.set_index("run").loc["base", "train_change_mean"] == 0
    base_train = t2i.set_index("run").loc["base", "train_reward_mean"]
    assert tuned["train_change_mean"].to_numpy() == pytest.approx(
        (tuned["train_reward_mean"] - base_train).to_numpy()
    )
    assert "train_change per seed, paired image by image" in (tables / "t2i.md").read_text()
    assert (
        "loop samplers (fine-tuning rounds): graft, self_fit, pgraft"
        in (tables / "t2i.md").read_text()
    )
    # layout: every run (GRAFT with both rules), at equal reward queries, with the figures
    lay = pd.read_csv(tables / "layout.csv")
    lay_smoke = yaml.safe_load((wf / "tasks/layout.yaml").read_text())["layout"]["profiles"][
        "smoke"
    ]
    n_i = lay_smoke["pgraft"]["intermediate_steps"]
    assert list(lay["run"]) == [
        "base",
        "graft",
        "graft_threshold",
        "self_fit",
        *[f"pgraft{n}" for n in n_i],
        "ddpo",
        "best_of_m",
    ]
    assert (lay["n_seeds"] == len(lay_smoke["seeds"])).all()
    tuned = lay[~lay["run"].isin(["base", "best_of_m"])]
    assert (tuned["reward_queries_mean"] == lay_smoke["graft"]["loop"]["reward_budget"]).all()
    assert lay["heldout_reward_mean"].between(0, 1).all() and lay["fid_mean"].notna().all()
    for name in ("layout_reward_vs_queries", "layout_pgraft_vs_ni", "layout_samples"):
        assert (wf / f"results/smoke/figures/{name}.png").stat().st_size > 1000
    # molecule: GRAFT with and without de-duplication, P-GRAFT, DDPO at equal reward queries
    mol = pd.read_csv(tables / "molecule.csv")
    mol_smoke = yaml.safe_load((wf / "tasks/molecule.yaml").read_text())["molecule"]["profiles"][
        "smoke"
    ]
    n_i = mol_smoke["pgraft"]["intermediate_steps"]
    assert list(mol["run"]) == [
        "base",
        "graft",
        "graft_dedup",
        "self_fit",
        *[f"pgraft{n}" for n in n_i],
        "ddpo",
        "best_of_m",
    ]
    assert (mol["n_seeds"] == len(mol_smoke["seeds"])).all()
    tuned = mol[~mol["run"].isin(["base", "best_of_m"])]
    assert (tuned["reward_queries_mean"] == mol_smoke["graft"]["loop"]["reward_budget"]).all()
    assert mol["reward_mean"].between(0, 1).all() and mol["validity_mean"].between(0, 1).all()
    for name in ("molecule_reward_vs_queries", "molecule_pgraft_vs_ni", "molecule_samples"):
        assert (wf / f"results/smoke/figures/{name}.png").stat().st_size > 1000
    # toy2d: every run against its exact target law, Var[r | x_t] and INC beside the table
    toy = pd.read_csv(tables / "toy2d.csv").set_index("run")
    assert {"target_energy_mean", "target_null_mean", "data_energy_mean"} <= set(toy.columns)
    assert toy.drop(index="ddpo")["target_energy_mean"].notna().all()
    assert pd.isna(toy.loc["ddpo", "target_energy_mean"])  # DDPO has no target law
    toy_inc = pd.read_csv(tables / "toy2d_inc.csv")
    assert {"base", "base+inc", "oracle"} == set(toy_inc["sampler"])
    for name in ("toy2d_reward_vs_queries", "toy2d_pgraft_vs_ni", "toy2d_samples"):
        assert (wf / f"results/smoke/figures/{name}.png").stat().st_size > 1000
    assert (wf / "results/smoke/figures/toy2d_inc_frontier.png").stat().st_size > 1000
    # best_of_m fine-tunes nothing and pays m times the base's sampling per sample
    from graftbench import spec

    for task, table in (
        ("t2i", t2i),
        ("layout", lay),
        ("molecule", mol),
        ("toy2d", toy.reset_index()),
    ):
        rows, data = table.set_index("run"), yaml.safe_load((wf / f"tasks/{task}.yaml").read_text())
        m = spec.resolve({"profile": "smoke", "tasks": [task], **data}, task).best_of_m.m
        assert rows.loc["best_of_m", "reward_queries_mean"] == 0
        assert rows.loc["best_of_m", "inference_flops_mean"] == pytest.approx(
            m * rows.loc["base", "inference_flops_mean"]
        )
    # every job that computes left its time and memory, gathered into one table
    bench = pd.read_csv(tables / "benchmarks.csv")
    logs = sorted(wf.glob("results/smoke/*/logs/*.log"))
    computed = {p.stem for p in logs if p.stem != "config"}  # config: writes a param out
    assert computed == {j for j in bench["job"]}, "a computing job without a benchmark: file"
    assert (bench["s"] > 0).all() and (bench["max_rss"] > 0).all()
    # a second run has nothing to do
    again = snakemake(wf, "--profile", "profiles/smoke", "-n")
    assert "Nothing to be done" in again.stdout + again.stderr
    # the resolved config is a rule's output: a dry run with other settings leaves it alone
    written = (wf / "results/smoke/t2i/config.json").read_text()
    (wf / "seeds.yaml").write_text(yaml.safe_dump({"t2i": {"profiles": {"smoke": {"seeds": [5]}}}}))
    edited = snakemake(wf, "--profile", "profiles/smoke", "--configfile", "seeds.yaml", "-n")
    # the edit is seen (the config job is planned again), and only a real run writes it
    assert edited.returncode == 0 and "rule config:" in edited.stdout, edited.stdout[-2000:]
    assert (wf / "results/smoke/t2i/config.json").read_text() == written
    # a config edit reruns the jobs that depend on the edited part, not the others
    inc_edit = planned(wf, {"inc": {"train": {"steps": 21}}})
    assert {"unconditional_corrector", "unconditional_sample_inc", "inc_table"} <= inc_edit.keys()
    assert "unconditional_pretrain" not in inc_edit
    assert "unconditional_pretrain" in planned(wf, {"pretrain": {"lr": 0.003}})
    # a new step count adds its own jobs and reruns none of the existing ones
    more = planned(wf, {"sample": {"steps": [*smoke["sample"]["steps"], 2]}})
    assert (
        more["unconditional_sample"] == len(smoke["seeds"])
        and "unconditional_corrector" not in more
    )
    # the HTML report holds the table and the figure
    report = snakemake(wf, "--profile", "profiles/smoke", "--report", "report.html")
    assert report.returncode == 0, report.stderr[-2000:]
    html = (wf / "report.html").read_text(errors="replace")
    assert "unconditional_fid_vs_flops.png" in html and "unconditional.csv" in html
    assert "inc_fid_vs_flops.png" in html and "inc.csv" in html
    assert "t2i_samples.png" in html and "t2i.csv" in html
    assert "layout_samples.png" in html and "layout.csv" in html
    assert "molecule_samples.png" in html and "molecule.csv" in html
    assert "toy2d_inc_frontier.png" in html and "toy2d.csv" in html
    assert_report_renders(wf / "report.html", tmp_path / "chromium")
    # and the summary verb prints what reproduces, then (--all) every table, in the terminal
    summary = subprocess.run(
        [sys.executable, "-m", "graftbench", "summary", "--results", str(wf / "results")]
        + ["--profile", "smoke", "--all"],
        capture_output=True,
        text=True,
    )
    assert summary.returncode == 0 and summary.stdout.startswith("| claim | paper |")
    assert "FID against FLOPs" in summary.stdout
    assert "reproduces.md" in html and "headline.png" in html


def planned(wf: Path, smoke_override: dict) -> dict[str, int]:
    """Jobs per rule that a dry run would execute with `smoke_override` merged into the smoke
    preset."""
    (wf / "edit.yaml").write_text(
        yaml.safe_dump({"unconditional": {"profiles": {"smoke": smoke_override}}})
    )
    run = snakemake(wf, "--profile", "profiles/smoke", "--configfile", "edit.yaml", "-n")
    assert run.returncode == 0, run.stderr[-2000:]
    lines = (run.stdout + run.stderr).splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:2] == ["job", "count"])
    jobs = {}
    for line in lines[start + 2 :]:  # after the header and its dashed rule: "name  count"
        if len(line.split()) != 2 or line.split()[0] == "total":
            break
        jobs[line.split()[0]] = int(line.split()[1])
    return jobs


CHROMIUM_FLAGS = [
    # the flags that keep Chromium from reaching for a network this machine does not have
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--virtual-time-budget=5000",
]
EXPECTED_RESULTS = [
    "unconditional.csv",
    "unconditional_fid_vs_flops.png",
    "inc.csv",
    "inc_fid_vs_flops.png",
    "t2i.csv",
    "t2i_reward_vs_queries.png",
    "t2i_pgraft_vs_ni.png",
    "t2i_samples.png",
    "layout.csv",
    "layout_reward_vs_queries.png",
    "layout_pgraft_vs_ni.png",
    "layout_samples.png",
    "molecule.csv",
    "molecule_reward_vs_queries.png",
    "molecule_pgraft_vs_ni.png",
    "molecule_samples.png",
    "toy2d.csv",
    "toy2d_reward_vs_queries.png",
    "toy2d_pgraft_vs_ni.png",
    "toy2d_samples.png",
    "toy2d_inc.csv",
    "toy2d_inc_frontier.png",
    "benchmarks.csv",
]


def assert_report_renders(report: Path, scratch: Path) -> None:
    """Open Snakemake's HTML report in headless Chromium: the page must render (a screenshot
    that is not blank, the navigation in the rendered DOM), and every table and figure must be
    embedded with its caption, each figure a PNG that decodes to a real image."""
    import base64
    import io
    import re
    import shutil as sh

    import numpy as np
    from PIL import Image

    chromium = sh.which("chromium") or sh.which("chromium-browser")
    if chromium is None:
        if os.environ.get("GRAFTBENCH_REQUIRE_CHROMIUM"):
            pytest.fail("chromium is not installed: `make test` installs it (Debian: chromium)")
        pytest.skip("chromium is not installed (`make test` installs it)")
    scratch.mkdir(parents=True, exist_ok=True)
    base = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={scratch / 'profile'}"]
    shot = scratch / "report.png"
    run = subprocess.run(
        [*base, "--window-size=1280,900", f"--screenshot={shot}", report.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0 and shot.exists(), run.stderr[-2000:]
    grey = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert grey.std() > 10, "the report renders as a blank page"
    # share of pixels unlike the background; not a darkness threshold, since the sidebar's
    # shade depends on when in its CSS transition the screenshot lands (0.19 either way here)
    background = np.bincount(grey.astype(int).ravel()).argmax()
    assert (grey != background).mean() > 0.05, "the report shows almost nothing"
    dom = subprocess.run(
        [*base, "--dump-dom", report.as_uri()], capture_output=True, text=True, timeout=120
    ).stdout
    rendered = re.sub(r"<script.*?</script>", "", dom, flags=re.S)  # what the page's JS built
    for item in ("Workflow", "Statistics", "Results"):
        assert item in rendered, f"the report's navigation lacks {item!r}"
    # the results Snakemake embeds: {"<path>": {"caption": ..., "data_uri": ...}, ...}
    entries = {m.group(1): m.end() for m in re.finditer(r'"[^"]*/([^/"]+)": \{"name"', dom)}
    for name in EXPECTED_RESULTS:
        assert name in entries, f"{name} is missing from the report"
        head_end = dom.index('"data_uri": "', entries[name])
        assert '"caption": "<p>' in dom[entries[name] : head_end], f"{name} has no caption"
        uri = dom[head_end + len('"data_uri": "') : dom.index('"', head_end + len('"data_uri": "'))]
        if name.endswith(".png"):
            assert uri.startswith("data:image/png;"), f"{name} is not embedded as a PNG"
            image = Image.open(io.BytesIO(base64.b64decode(uri.split("base64,", 1)[1])))
            assert min(image.size) >= 200, f"{name} is {image.size}, not a figure"


# Every rule runs in the project's venv (pyproject.toml pins it): these machines have no
# conda (neither PyPI nor Debian ship it) and no container engine, so a `conda:` or
# `container:` directive could never be used or tested here. That lint is the one accepted.
NO_SOFTWARE_DEFINITION = "Specify a conda environment or container for each rule."


def workflow_lints(root: Path = ROOT) -> list[str]:
    """`snakemake --lint`'s findings, one "where: title" line each, the accepted one left out."""
    run = snakemake(root, "--lint", timeout=120)
    out, found, where = run.stdout + run.stderr, [], None
    for line in out.splitlines():
        if line.startswith("Lints for "):
            where = line[len("Lints for ") :].rstrip(":")
        elif line.startswith("    * ") and line.strip()[2:].rstrip(":") != NO_SOFTWARE_DEFINITION:
            found.append(f"{where}: {line.strip()[2:]}")
    assert run.returncode == 0 or "Lints for" in out, out[-2000:]  # it ran
    return found


@pytest.mark.workflow
def test_lint_is_clean():
    assert workflow_lints() == []


@pytest.mark.workflow
def test_a_subset_of_tasks_plans_only_their_jobs(tmp_path):
    wf = copy_workflow(tmp_path)
    # a --config replaces the profile's whole config list: repeat its profile=smoke
    run = snakemake(
        wf,
        "--profile",
        "profiles/smoke",
        "--config",
        "profile=smoke",
        "tasks=[layout]",
        "-n",
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert "results/smoke/layout/" in run.stdout
    rules = {
        line.split()[1].rstrip(":")
        for line in (run.stdout + run.stderr).splitlines()
        if line.startswith("rule ")
    }
    assert {"finetune_pretrain", "finetune_run", "finetune_table"} <= rules
    assert not any(r.startswith(("unconditional", "inc")) for r in rules), rules
    outputs = {
        line.split(": ", 1)[1]
        for line in run.stdout.splitlines()
        if line.strip().startswith("output: ")
    }
    planned_tasks = {p.split("/")[2] for out in outputs for p in out.split(", ")}
    assert planned_tasks <= {"layout", "tables", "figures"}, planned_tasks


def test_schema_is_generated_from_the_dataclasses():
    from graftbench.__main__ import main

    committed = (ROOT / "config/schema.yaml").read_text()
    out = ROOT / ".pytest_cache" / "schema.yaml"
    out.parent.mkdir(exist_ok=True)
    assert main(["schema", "--out", str(out)]) == 0
    assert out.read_text() == committed, "config/schema.yaml is stale: run `make schema`"


def test_typed_config_names_key_and_allowed_values():
    from graftbench.config import ConfigError
    from graftbench.spec import resolve
    from tests.conftest import workflow_config

    config = workflow_config("smoke")
    config["unconditional"]["profiles"]["smoke"]["evaluate"] = {"fid_backends": ["kid"]}
    with pytest.raises(
        ConfigError,
        match=r"unconditional.evaluate.fid_backends\[0\]: 'kid' .*'inception', 'trained-cnn'",
    ):
        resolve(config, "unconditional")


@pytest.mark.workflow
def test_a_killed_chain_resumes_to_the_same_results(smoke_run, tmp_path):
    """SIGKILL Snakemake in the middle of a fine-tuning job (toy2d's GRAFT run, held by
    tests/hold/sitecustomize.py right after its log's first round line, so that the kill
    cannot miss the job on a fast machine), unlock and run the same command again: it
    finishes, and the run's evaluation and records equal the uninterrupted smoke run's (apart
    from wall times). Each task's fine-tuning verb resumes from its loop checkpoint in its
    own tests."""
    import signal
    import time

    wf = copy_workflow(tmp_path / "killed")
    run = "results/smoke/toy2d/graft/seed0"
    target = [SNAKEMAKE, "--profile", "profiles/smoke", f"{run}/metrics.json"]
    hold = Path(__file__).parent / "hold"
    env = {
        **os.environ,
        "GRAFTBENCH_HOLD_AT": "round 0:",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(hold), os.environ.get("PYTHONPATH")])),
    }
    proc = subprocess.Popen(
        target,
        cwd=wf,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    log = wf / "results/smoke/toy2d/logs/graft_seed0.log"
    deadline = time.time() + 600
    while not (log.exists() and "round 0:" in log.read_text()):
        assert proc.poll() is None, "the chain ended before the kill"
        assert time.time() < deadline, "no fine-tuning round within 600 s"
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (wf / run / "metrics.json").exists()  # killed inside the job
    # SIGKILL leaves Snakemake's lock behind; the README's recovery: unlock, then rerun
    locked = snakemake(wf, *target[1:])
    assert locked.returncode != 0 and "--unlock" in locked.stderr
    assert snakemake(wf, "--profile", "profiles/smoke", "--unlock").returncode == 0
    rerun = snakemake(wf, *target[1:])
    assert rerun.returncode == 0, rerun.stderr[-3000:]

    def timeless(obj):
        if isinstance(obj, dict):
            return {k: timeless(v) for k, v in obj.items() if not k.endswith(("_s", "wall"))}
        return [timeless(v) for v in obj] if isinstance(obj, list) else obj

    for name in ("eval.json", "metrics.json"):
        resumed = json.loads((wf / run / name).read_text())
        plain = json.loads((smoke_run / run / name).read_text())
        assert timeless(resumed) == timeless(plain), name
    rounds = [timeless(json.loads(line)) for line in (wf / run / "rounds.jsonl").open()]
    assert rounds == [
        timeless(json.loads(line)) for line in (smoke_run / run / "rounds.jsonl").open()
    ]
