import json
import os
from pathlib import Path


def task_config(task):
    """The task's resolved config (base + profile preset), written to
    results/{profile}/{task}/config.json for the verbs' `--config`.

    Resolving here also type-checks it, so a bad key stops the workflow at load time. The path
    never changes, so as a param it triggers no reruns: which jobs rerun after a config edit
    is decided by each job's `config_slice` param. The file is rewritten (atomically) only
    when its content changes; Snakemake's lock keeps a second real run out of the folder, but
    a dry run with other settings during a run does rewrite it, so don't."""
    from graftbench.config import to_dict

    text = json.dumps(to_dict(resolve(config, task)), sort_keys=True, indent=1)
    path = Path(RESULTS) / task / "config.json"
    if not path.exists() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(text)
        tmp.replace(path)
    return str(path)


def config_slice(task, *keys):
    """The parts of a task's resolved config that one job's outputs depend on, as a params
    value: Snakemake reruns a job when its params change, so editing, say, the INC settings
    reruns the INC jobs but not pre-training. Keys are dotted paths ("sample.shift"); a list a
    rule sweeps over (sample.steps, seeds) belongs in its wildcards, not here, or adding one
    value would rerun the jobs of all the others."""
    full = json.loads(Path(CONFIGS[task]).read_text())
    picked = {}
    for key in keys:
        value = full
        for part in key.split("."):
            value = value[part]
        picked[key] = value
    return json.dumps(picked, sort_keys=True)


CONFIGS = {task: task_config(task) for task in SUITE.tasks}

# Tables beyond tasks/<task>.csv (e.g. inc, from the unconditional task), added by the task .smk files.
EXTRA_TABLES = []
