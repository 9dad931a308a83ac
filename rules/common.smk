import json

from graftbench.config import to_dict

TASKS = {name: tasks.get(name) for name in SUITE.tasks}
# Each task's config resolved (base + profile preset, type-checked) when the workflow loads:
# a bad key stops it here, before any job, naming the key. Written to config.json by the
# `config` rule, never while the Snakefile is parsed.
RESOLVED = {name: to_dict(resolve(config, name)) for name in SUITE.tasks}
# Tables beyond {task}.csv (e.g. inc, from the unconditional task), added by the rule files.
EXTRA_TABLES = []


wildcard_constraints:
    task="|".join(SUITE.tasks),
    seed=r"\d+",
    steps=r"\d+",
    csteps=r"\d+",
    solver="euler|heun",
    run=r"graft|graft_[a-z]+|ddpo|pgraft\d+",


def config_slice(task, *keys):
    """The parts of a task's resolved config that one job's outputs depend on, as a params
    value: Snakemake reruns a job when its params change, so editing, say, the INC settings
    reruns the INC jobs but not pre-training. Keys are dotted paths ("sample.shift"); a list a
    rule sweeps over (sample.steps, seeds) belongs in its wildcards, not here, or adding one
    value would rerun the jobs of all the others."""
    picked = {}
    for key in keys:
        value = RESOLVED[task]
        for part in key.split("."):
            value = value[part]
        picked[key] = value
    return json.dumps(picked, sort_keys=True)


def task_config(task):
    """A job's --config: the task's config.json, written by the `config` rule. ancient():
    rewriting it after a config edit reruns no job by itself; which jobs rerun is decided by
    each job's `config_slice` param."""
    return ancient(f"{RESULTS}/{task}/config.json")


localrules:
    config,
    benchmarks,


rule config:
    output:
        f"{RESULTS}/{{task}}/config.json",
    log:
        f"{RESULTS}/{{task}}/logs/config.log",
    params:
        py=PY,
        resolved=lambda w: json.dumps(RESOLVED[w.task], sort_keys=True),
    shell:
        "{params.py} -m graftbench resolve --task {wildcards.task} --config {params.resolved:q}"
        " --out {output} > {log} 2>&1"


rule benchmarks:
    input:
        expand(f"{RESULTS}/tables/{{task}}.csv", task=SUITE.tasks),
        EXTRA_TABLES,
    output:
        table=report(
            f"{RESULTS}/tables/benchmarks.csv",
            caption="../report/benchmarks.rst",
            category="workflow",
            labels={"kind": "job time and memory"},
        ),
        md=f"{RESULTS}/tables/benchmarks.md",
    log:
        f"{RESULTS}/logs/benchmarks.log",
    params:
        py=PY,
        results=RESULTS,
    shell:
        "{params.py} -m graftbench benchmarks --results {params.results}"
        " --table {output.table} > {log} 2>&1"
