# Shared by the rule files (the tasks, their resolved configs, wildcard constraints) and
# the functions that rules call for their inputs and params.
import json
from pathlib import Path

from graftbench.config import to_dict

TASKS = {name: tasks.get(name) for name in SUITE.tasks}
# Each task's config resolved (base + profile preset, type-checked) when the workflow loads:
# a bad key stops it here, before any job, naming the key. Jobs get it inline (`InlineConfig`);
# the `config` rule writes it to results/{profile}/{task}/config.json, for people and by-hand
# runs; nothing is written while the Snakefile is parsed.
RESOLVED = {name: to_dict(resolve(config, name)) for name in SUITE.tasks}
# Tables beyond {task}.csv (e.g. inc, from the unconditional task), added by the rule files.
EXTRA_TABLES = []


wildcard_constraints:
    task="|".join(SUITE.tasks),
    seed=r"\d+",
    steps=r"\d+",
    csteps=r"\d+",
    solver="euler|heun",
    run=r"graft|graft_[a-z]+|self_fit|ddpo|pgraft\d+",


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


class InlineConfig:
    """A job's --config: its task's resolved config as inline JSON (a params value).

    Not a tracked param, on purpose: Snakemake leaves params it cannot represent (this
    object) out of its rerun checks, so which edits rerun a job is its `config_slice`'s
    decision alone; a tracked copy of the whole config would rerun every job on any edit. Nor
    an input file: jobs downstream of config.json would rerun on every edit, and as ancient()
    inputs on none (Snakemake does not check the params of a job downstream of one that
    reruns, and ancient() then skips it)."""

    def __init__(self, task):
        self.text = json.dumps(RESOLVED[task], sort_keys=True)

    def __str__(self):
        return self.text


# ---- the fine-tuning tasks (rules/finetune.smk)
FT_TASKS = [t for t in SUITE.tasks if TASKS[t].finetune is not None]
WITH_DATA = [t for t in FT_TASKS if "prepare-data" in TASKS[t].verbs]
WITH_FEATURES = [t for t in FT_TASKS if "train-features" in TASKS[t].verbs]
# pre-training of the longest chain first (t2i's takes the longest on the cpu profile)
PRETRAIN_PRIORITY = {"t2i": 3}
# the keys of P-GRAFT's runs: its section but the N_I list, which the run wildcard sweeps
# (adding an N_I reruns no existing job)
PGRAFT_KEYS = ("pgraft.loop", "pgraft.selection", "pgraft.optim", "pgraft.epochs")


def one_of(names):
    return "|".join(names) or "(?!)"  # (?!): no task matches


def keys(task, step):
    return TASKS[task].config_keys[step]


def run_keys(task, run):
    return (
        *keys(task, "evaluate"),
        *(PGRAFT_KEYS if run.startswith("pgraft") else [run]),
    )


def run_inputs(w):
    """The pre-trained model and the files the task's runs read."""
    needs = TASKS[w.task].finetune.inputs
    out = {"model": f"{RESULTS}/{w.task}/model.pt"}
    if "data" in needs:
        out["data"] = f"{RESULTS}/{w.task}/data/summary.json"
    if "features" in needs:
        out["features"] = f"{RESULTS}/{w.task}/features.pt"
    return out


def pretrain_inputs(w):
    if w.task in WITH_DATA:
        return {"data": f"{RESULTS}/{w.task}/data/summary.json"}
    return {}


def cli_inputs(input):
    """--data (prepare-data's folder) and --features where the job has them."""
    out = [f"--data {Path(input.data).parent}"] if "data" in input.keys() else []
    if "features" in input.keys():
        out.append(f"--features {input.features}")
    return " ".join(out)


def table_inputs(w):
    cfg = resolve(config, w.task)
    out = expand(
        f"{RESULTS}/{w.task}/{{run}}/seed{{seed}}/{{f}}",
        run=cfg.runs(),
        seed=cfg.seeds,
        f=["metrics.json", "eval.json"],
    )
    if w.task in WITH_DATA:
        out.append(f"{RESULTS}/{w.task}/data/summary.json")
    if w.task in WITH_FEATURES:
        out.append(f"{RESULTS}/{w.task}/features.json")
    out.append(f"{RESULTS}/{w.task}/config.json")  # the table reads the resolved config
    # a task with reward-variance shows Var[r | x_t] in its P-GRAFT figure
    if "reward-variance" in TASKS[w.task].verbs:
        out.append(f"{RESULTS}/{w.task}/variance.json")
    return out
