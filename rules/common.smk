import json


def task_config(task):
    """The task's resolved config (base + profile preset) as JSON for `--config`.

    Resolving here also type-checks it, so a bad key stops the workflow at load time."""
    from graftbench.config import to_dict

    return json.dumps(to_dict(resolve(config, task)), sort_keys=True)


CONFIGS = {task: task_config(task) for task in SUITE.tasks}

# Tables beyond tasks/<task>.csv (e.g. inc, from the unconditional task), added by rule files.
EXTRA_TABLES = []
