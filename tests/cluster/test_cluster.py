"""The smoke workflow on a one-node SLURM cluster through profiles/slurm (issue 28).

`make test-cluster` runs this file (a plain `pytest` skips tests/cluster: conftest.py). It
starts a cluster with scripts/slurm-cluster in a temporary folder (root or sudo; Debian's
packages are installed when missing), and stops it at the end, also after a failure. Then:

1. the smoke preset through `--profile profiles/slurm --profile tests/cluster/profile` (the
   second profile: the smoke preset, the account, and the resources benchmarks/
   slurm_resources.py sized from a local smoke run), one cluster job per Snakemake job, gives
   the same tables as a local run (`--profile profiles/smoke`) in every column but times:
   the shared smoke run of a `make test` on this same tree when it kept its tables (as CI
   runs the two), else one run here;
2. a job cancelled with scancel while it runs fails its Snakemake run, naming the job, and the
   same command run again resumes and finishes with the same tables (toy2d only: the
   quickest task with a job chain);
3. a job over its memory request and one over its time limit are killed by SLURM and reported
   by Snakemake as failed, naming the rule, with SLURM's reason in the SLURM log it names
   (tests/cluster/limits/Snakefile).

Timings (set-up, both wall times, per-job overhead) go to the terminal summary.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import ROOT, kept_smoke_run
from tests.test_workflow import SNAKEMAKE, copy_workflow

sys.path.insert(0, str(ROOT / "benchmarks"))
import slurm_resources  # noqa: E402
from compare_tables import TIMES  # noqa: E402

pytestmark = pytest.mark.cluster

SCRIPT = ROOT / "scripts/slurm-cluster"
OVERLAY = ROOT / "tests/cluster/profile"
LIMITS = ROOT / "tests/cluster/limits"
TABLES = ("unconditional", "inc", "t2i", "layout", "molecule", "toy2d", "toy2d_inc")
SMOKE = ["--profile", "profiles/slurm", "--profile", str(OVERLAY)]


def run(cmd, env=None, cwd=None, timeout=3600) -> subprocess.CompletedProcess:
    return subprocess.run(
        cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture(scope="module")
def cluster(timings):
    """A running cluster; yields the environment that reaches it (SLURM_CONF, account)."""
    # under /tmp, not pytest's tmp_path: the munge, mysql and slurm users must reach it
    folder = Path(tempfile.mkdtemp(prefix="graftbench-slurm-", dir="/tmp"))
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    t0 = time.monotonic()
    start = run([*sudo, str(SCRIPT), "start", str(folder)], timeout=1800)
    timings["cluster set-up (script, s)"] = round(time.monotonic() - t0, 1)
    try:
        assert start.returncode == 0, start.stderr[-4000:]
        assert "COMPLETED and in sacct" in start.stderr
        env = dict(os.environ, SLURM_CONF=f"{folder}/etc/slurm.conf", SBATCH_ACCOUNT="root")
        env.pop("SBATCH_PARTITION", None)
        yield env
    finally:
        stop = run([*sudo, str(SCRIPT), "stop", str(folder)], timeout=300)
        print(stop.stderr, file=sys.stderr)
        left = run(["pgrep", "-f", str(folder)]).stdout.split()
        assert stop.returncode == 0 and not left, (stop.stderr, left)
        assert not list((folder / "run").glob("*.pid")), "stop left PID files behind"
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def local(tmp_path_factory, timings):
    """The local smoke run the cluster's tables are compared with: the one `make test` ran
    on this same tree when its tables were kept (tests/conftest.py), else run here, once."""
    kept = kept_smoke_run()
    if kept is not None:
        timings["local smoke run"] = f"make test's, of this tree ({kept})"
        return kept
    wf = copy_workflow(tmp_path_factory.mktemp("local"))
    t0 = time.monotonic()
    done = run([SNAKEMAKE, "--cores", "2", "--profile", "profiles/smoke"], cwd=wf)
    timings["local smoke run, 2 cores (s)"] = round(time.monotonic() - t0, 1)
    assert done.returncode == 0, done.stderr[-3000:]
    return wf


def table(root: Path, name: str) -> pd.DataFrame:
    df = pd.read_csv(root / f"results/smoke/tables/{name}.csv")
    return df.drop(columns=[c for c in df.columns if c.startswith(TIMES)])


def submitted(output: str) -> dict[str, str]:
    """SLURM job id -> Snakemake job id, from the plugin's 'has been submitted' lines."""
    return {
        m.group(2): m.group(1)
        for m in re.finditer(r"Job (\d+) has been submitted with SLURM jobid (\d+)", output)
    }


def sacct(env, ids) -> pd.DataFrame:
    out = run(
        ["sacct", "-n", "-X", "-P", "-j", ",".join(ids), "-o", "JobID,State,ElapsedRaw,Comment"],
        env=env,
    ).stdout
    rows = [line.split("|", 3) for line in out.splitlines() if line]
    return pd.DataFrame(rows, columns=["id", "state", "elapsed", "comment"])


def test_smoke_workflow_on_the_cluster_gives_the_local_tables(cluster, local, timings, tmp_path):
    wf = copy_workflow(tmp_path / "cluster")
    t0 = time.monotonic()
    done = run([SNAKEMAKE, *SMOKE], env=cluster, cwd=wf)
    wall = time.monotonic() - t0
    assert done.returncode == 0, done.stderr[-5000:]
    for name in TABLES:
        pd.testing.assert_frame_equal(table(wf, name), table(local, name))
    jobs = submitted(done.stderr)
    local_rules = len(re.findall(r"^localrule \w+:", done.stderr, re.MULTILINE))
    assert len(jobs) > 60 and local_rules >= 5  # tables and config ran on the "login node"
    acct = sacct(cluster, jobs)
    assert len(acct) == len(jobs) and (acct["state"] == "COMPLETED").all(), acct
    # every benchmark file maps to a rule the run sent to the cluster (slurm_resources.py)
    results = wf / "results/smoke"
    measured, unknown = slurm_resources.measure(results, slurm_resources.benchmark_patterns())
    assert not unknown, unknown
    # the rules sent to the cluster, from the plugin's log paths (slurm/rule_<rule>/...)
    sent = set(
        re.findall(r"has been submitted with SLURM jobid \d+ [(]log: \S*/rule_(\w+)/", done.stderr)
    )
    assert set(measured["rule"]) - sent <= {
        "unconditional_table",
        "inc_table",
        "finetune_table",
        "toy2d_inc_table",
    }
    # the plugin deletes the SLURM logs of successful jobs (and then their empty folders)
    # from the folder the overlay names, which they were written to
    assert "/results/smoke/slurm/rule_finetune_run/" in done.stderr
    assert not list((results / "slurm").rglob("*.log"))
    in_job = acct["elapsed"].astype(float).sum() - measured[measured["rule"].isin(sent)]["s"].sum()
    timings["cluster smoke run (s)"] = round(wall, 1)
    timings["cluster jobs / local rules"] = f"{len(jobs)} / {local_rules}"
    if local_wall := timings.get("local smoke run, 2 cores (s)"):
        timings["overhead per cluster job, wall (s)"] = round((wall - local_wall) / len(jobs), 1)
    timings["overhead per cluster job, inside the allocation (s)"] = round(in_job / len(jobs), 1)


def squeue(env) -> list[tuple[str, str, str]]:
    """(job id, state, comment) of the cluster's jobs."""
    out = run(["squeue", "-h", "-o", "%i|%T|%k"], env=env).stdout
    return [tuple(line.split("|", 2)) for line in out.splitlines() if line]


def test_a_cancelled_job_fails_the_run_and_a_rerun_resumes(cluster, local, timings, tmp_path):
    wf = copy_workflow(tmp_path / "cancel")
    toy = wf / "results/smoke/toy2d"
    # a --config replaces the profiles' config list: repeat the overlay's entries
    cmd = [SNAKEMAKE, *SMOKE, "--config", "profile=smoke", "device=cpu", "tasks=[toy2d]"]
    t0 = time.monotonic()
    proc = subprocess.Popen(
        cmd, cwd=wf, env=cluster, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        # cancel the first fine-tuning run once its command is under way (its log exists):
        # pre-training and the base evaluations before it have finished by then
        deadline, victim = time.time() + 900, None
        while victim is None:
            assert proc.poll() is None, "the workflow ended before a job could be cancelled"
            assert time.time() < deadline, "no fine-tuning job ran within 900 s"
            for job, state, comment in squeue(cluster):
                m = re.fullmatch(r"rule_finetune_run_wildcards_toy2d_(\w+)_(\d+)", comment)
                if state == "RUNNING" and m and (toy / f"logs/{m[1]}_seed{m[2]}.log").exists():
                    time.sleep(2)
                    victim, name = job, f"{m[1]}_seed{m[2]}"
                    break
            time.sleep(0.5)
        assert run(["scancel", victim], env=cluster).returncode == 0
        out, err = proc.communicate(timeout=900)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert "Error in rule finetune_run" in err, err[-4000:]
    assert f"SLURM-job '{victim}' failed, SLURM status is: 'CANCELLED" in err, err[-4000:]
    assert not (toy / f"{name.replace('_seed', '/seed')}/metrics.json").exists()
    assert not (wf / "results/smoke/tables/toy2d.csv").exists()
    # the same command again resumes: nothing that finished runs again, the cancelled job
    # does, and the tables equal those of the local run
    rerun = run(cmd, env=cluster, cwd=wf)
    assert rerun.returncode == 0, rerun.stderr[-4000:]
    assert "rule finetune_pretrain:" not in rerun.stderr
    assert f"/logs/{name}.log" in rerun.stderr
    for table_name in ("toy2d", "toy2d_inc"):
        pd.testing.assert_frame_equal(table(wf, table_name), table(local, table_name))
    timings["scancel and resume, toy2d (s)"] = round(time.monotonic() - t0, 1)


def test_over_memory_and_over_time_jobs_are_reported_naming_their_rule(cluster, timings, tmp_path):
    wf = tmp_path / "limits"
    shutil.copytree(LIMITS, wf)
    # the same executor settings (profiles/slurm and the overlay); no retries, both jobs run
    t0 = time.monotonic()
    done = run(
        # the profiles by absolute path: this folder holds only the Snakefile
        [SNAKEMAKE, "--profile", str(ROOT / "profiles/slurm"), "--profile", str(OVERLAY)]
        + ["--keep-going", "--retries", "0"],
        env=cluster,
        cwd=wf,
        timeout=900,
    )
    timings["memory and time limits (s)"] = round(time.monotonic() - t0, 1)
    err = done.stderr
    assert done.returncode != 0
    for rule, state, said in (
        ("hog", "FAILED", "exceeded memory limit"),
        ("sleeper", "TIMEOUT", "DUE TO TIME LIMIT"),
    ):
        block = err[err.index(f"Error in rule {rule}:") :]
        m = re.search(rf"SLURM-job '(\d+)' failed, SLURM status is: '{state}'", block)
        assert m, block[:3000]
        # the plugin keeps a failed job's SLURM log and names it; SLURM's reason is in it
        log = next((wf / "results/smoke/slurm").glob(f"rule_{rule}/*{m.group(1)}.log"))
        assert str(log.relative_to(wf)) in block[:3000] or str(log) in block[:3000], block[:3000]
        assert said in log.read_text(), log.read_text()[-2000:]
