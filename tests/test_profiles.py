"""The gpu, paper and slurm profiles: each plans the whole workflow in a dry run, and their
resources land on the right rules (a GPU on every rule that runs a model, none on data and
table rules; no set-resources entry naming a rule that does not exist, which Snakemake
would silently ignore).

Dry runs only, on a copy of the workflow files in a temporary folder: nothing executes, and
neither a GPU nor SLURM is needed (`snakemake -n` plans with its own dry-run executor, so the
SLURM plugin is loaded and its resources are resolved, but it never calls sbatch or sinfo).
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, copy_workflow, snakemake

TABLES = {"finetune_table", "unconditional_table", "inc_table", "toy2d_inc_table"}
# Rules that put a model on `device` go by these suffixes; every other rule must be a data or
# table rule, so a new rule has to be sorted into one of the two before the tests pass.
DEVICE_SUFFIXES = (
    "_pretrain",
    "_features",
    "_base",
    "_best_of_m",
    "_run",
    "_sample",
    "_sample_inc",
    "_invert",
    "_corrector",
    "_evaluate",
    "_real_floor",
    "_variance",
    "toy2d_inc",
)
HOST_SUFFIXES = ("_data", "_table", "config", "benchmarks", "summary")


def workflow_rules() -> set[str]:
    return {
        m.group(1)
        for smk in sorted((ROOT / "rules").glob("*.smk"))
        for m in re.finditer(r"^\s*rule (\w+):", smk.read_text(), re.MULTILINE)
    }


def profile(name: str) -> dict:
    return yaml.safe_load((ROOT / "profiles" / name / "config.yaml").read_text())


def planned_resources(stdout: str) -> dict[str, list[dict[str, str]]]:
    """Each planned job's `resources:` line from a dry run's output, by rule name."""
    jobs: dict[str, list[dict[str, str]]] = {}
    rule = None
    for line in stdout.splitlines():
        if m := re.match(r"(?:local)?rule (\w+):", line):
            rule = m.group(1)
        elif rule and (m := re.match(r"\s+resources: (.*)", line)):
            pairs = (item.split("=", 1) for item in m.group(1).split(", "))
            jobs.setdefault(rule, []).append(dict(pairs))
            rule = None
    return jobs


def device_rules() -> set[str]:
    return {r for r in workflow_rules() if r.endswith(DEVICE_SUFFIXES)}


def finetune_rules() -> set[str]:
    """They ask for `gpus_per_job` GPUs in the rule itself; a profile must not override it."""
    return {r for r in workflow_rules() if r == "finetune_run"}


@pytest.fixture(scope="module")
def workflow(tmp_path_factory) -> Path:
    """A copy of the workflow with the paper profile's user files planted (empty: a dry run
    only checks that they exist)."""
    wf = copy_workflow(tmp_path_factory.mktemp("profiles"))
    for path in PAPER_FILES:
        (wf / path).parent.mkdir(parents=True, exist_ok=True)
        (wf / path).touch() if Path(path).suffix else (wf / path).mkdir()
    return wf


# What the paper presets read from files you supply (tasks/*.yaml, profiles.paper)
PAPER_FILES = [
    "data/celebahq256",
    "data/genai-bench/genai_image.json",
    "data/stable-diffusion-2-1-base",
    "data/t2v-env/bin/python",
    "data/hf-cache",
    "data/publaynet/train.json",
    "data/publaynet/val.json",
]


@pytest.mark.workflow
def test_a_dry_run_lists_every_missing_user_file(tmp_path):
    run = snakemake(copy_workflow(tmp_path), "-n", "--profile", "profiles/paper")
    assert run.returncode == 2
    line = run.stderr.strip().splitlines()[-1]
    assert line.startswith("config error: the paper profile reads files you supply")
    assert all(path in line for path in PAPER_FILES), line


def test_every_rule_is_a_device_rule_or_a_data_or_table_rule():
    unsorted = {r for r in workflow_rules() if not r.endswith(DEVICE_SUFFIXES + HOST_SUFFIXES)}
    assert not unsorted, f"sort {unsorted} into DEVICE_SUFFIXES or HOST_SUFFIXES (and profiles)"
    assert TABLES <= workflow_rules()


@pytest.mark.parametrize("name", ["gpu", "paper", "slurm"])
def test_set_resources_name_existing_rules_and_a_gpu_for_exactly_the_device_rules(name):
    resources = profile(name)["set-resources"]
    assert set(resources) <= workflow_rules(), set(resources) - workflow_rules()
    with_gpu = {rule for rule, res in resources.items() if res.get("gpu") == 1}
    assert with_gpu == device_rules() - finetune_rules(), with_gpu ^ device_rules()
    assert not any("gpu" in resources.get(rule, {}) for rule in finetune_rules())


@pytest.mark.parametrize("name", ["gpu", "paper"])
def test_local_gpu_profiles_have_one_gpu_slot_and_run_on_cuda(name):
    prof = profile(name)
    assert prof["resources"] == {"gpu": 1}
    assert "device=cuda" in prof["config"]


def check_plan(run: subprocess.CompletedProcess, results: str) -> dict[str, list[dict]]:
    """The dry run succeeded, planned every table, gave each device job a GPU and no data or
    table job one; returns the planned resources for further checks."""
    assert run.returncode == 0, run.stderr[-3000:]
    jobs = planned_resources(run.stdout)
    total = re.search(r"^total\s+(\d+)$", run.stdout, re.MULTILINE)
    assert total and sum(map(len, jobs.values())) == int(total.group(1)), "a job went unparsed"
    assert TABLES <= set(jobs), TABLES - set(jobs)
    for rule, resources in jobs.items():
        wants_gpu = rule in device_rules()
        assert all((res.get("gpu") == "1") == wants_gpu for res in resources), (rule, resources)
    # every verb that takes a device gets cuda (printed by -p), and the preset's folder is used
    assert "--device cuda" in run.stdout and "--device cpu" not in run.stdout
    assert f"results/{results}/" in run.stdout
    return jobs


@pytest.mark.workflow
def test_gpu_profile_plans_the_cpu_preset_with_one_gpu_per_device_job(workflow):
    run = snakemake(workflow, "-n", "-p", "--profile", "profiles/gpu")
    check_plan(run, "cpu")


@pytest.mark.workflow
def test_paper_profile_plans_the_whole_workflow_on_the_gpu(workflow):
    run = snakemake(workflow, "-n", "-p", "--profile", "profiles/paper")
    check_plan(run, "paper")


@pytest.mark.workflow
def test_slurm_profile_plans_the_whole_workflow_with_the_slurm_executor(workflow):
    plugin = importlib.util.find_spec("snakemake_executor_plugin_slurm")
    assert plugin, "the SLURM plugin is in the dev extra: pip install -e '.[dev]'"
    where = {
        "SBATCH_ACCOUNT": "lab",
        "SBATCH_PARTITION": "cpuq",
        "GRAFTBENCH_GPU_PARTITION": "gpuq",
    }
    env = {**os.environ, **where}
    run = snakemake(workflow, "-n", "-p", "--profile", "profiles/slurm", env=env)
    jobs = check_plan(run, "paper")
    # account and partitions come from the environment: the GPU partition for device rules
    for rule, resources in jobs.items():
        partition = "gpuq" if rule in device_rules() else "cpuq"
        for res in resources:
            assert res["slurm_account"] == "lab" and res["slurm_partition"] == partition, rule
    sized = profile("slurm")["set-resources"]
    for rule, resources in jobs.items():
        want = sized.get(rule, profile("slurm")["default-resources"])
        for res in resources:
            assert res["runtime"] == str(want["runtime"]), (rule, res)
            assert res["mem_mb"] == str(want["mem_mb"]), (rule, res)
            assert res["cpus_per_task"] == "1", (rule, res)  # the rule's threads
    assert int(jobs["unconditional_pretrain"][0]["runtime"]) >= 24 * 60  # 400k steps


@pytest.mark.workflow
def test_several_gpus_per_job_launch_fine_tuning_under_torchrun(workflow):
    """gpus_per_job = 2: each fine-tuning job asks for two GPUs and starts two ranks with
    torchrun; every other device job (best_of_m's too) keeps one GPU and starts plainly."""
    run = snakemake(
        workflow,
        "-n",
        "-p",
        "--profile",
        "profiles/paper",
        "--config",
        "profile=paper",
        "device=cuda",
        "gpus_per_job=2",
        "--resources",
        "gpu=2",
    )
    assert run.returncode == 0, run.stderr[-3000:]
    jobs = planned_resources(run.stdout)
    for rule, resources in jobs.items():
        want = "2" if rule in finetune_rules() else "1" if rule in device_rules() else None
        assert all(res.get("gpu") == want for res in resources), (rule, resources)
    lines = [line for line in run.stdout.splitlines() if " finetune --task " in line]
    launches = [line for line in lines if "--run best_of_m" not in line]
    assert launches and all(
        "torch.distributed.run --standalone --nproc-per-node 2 -m -- graftbench" in line
        for line in launches
    )
    # best_of_m fine-tunes nothing: one process, one GPU
    best = [line for line in lines if "--run best_of_m" in line]
    assert best and not any("torch.distributed" in line for line in best)
    assert sum("torch.distributed.run" in line for line in run.stdout.splitlines()) == len(launches)
