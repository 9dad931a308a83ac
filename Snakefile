# graftbench workflow. Plain `snakemake --cores N` runs the cpu profile; choose another with
# `--profile profiles/<smoke|cpu|gpu|paper|slurm>`. Logic lives in `python -m graftbench <verb>`.
import sys

from snakemake.utils import min_version, update_config

from graftbench import tasks
from graftbench.spec import resolve
from graftbench.workflow_config import (
    check,
    command_line_sources,
    exit_on_error,
    load_yaml,
    missing_files,
)

min_version("9.0")

# The config files, loaded here rather than with `configfile:` so that a YAML mistake names
# its file, line and column; `--configfile` and `--config` on the command line override them.
CONFIG_FILES = ["config/config.yaml"] + [f"tasks/{t}.yaml" for t in tasks.names()]
with exit_on_error():
    SOURCES = [(f, load_yaml(f)) for f in CONFIG_FILES]
for _, data in SOURCES:
    update_config(config, data)
update_config(config, workflow.config_settings.overwrite_config)

# Typed checks of every key of the base and of every preset, then the JSON schema (presets
# hold differences only, so the schema sets no defaults): one line naming the file and key.
SOURCES += command_line_sources(
    workflow.config_settings.configfiles, workflow.config_settings.config
)
with exit_on_error():
    SUITE = check(config, SOURCES, "config/schema.yaml")
    missing_files(config, SUITE)  # data, weights and prompt sets you supply, all listed
RESULTS = f"{SUITE.results}/{SUITE.profile}"
PY = sys.executable  # the interpreter running Snakemake, i.e. the project's venv


report: "report/workflow.rst"


# Every job runs on one thread: on 2 cores two such jobs at a time gave 1.35-1.7x the
# throughput of one 2-thread job at a time when measured alone, 1.1-1.2x inside the full cpu
# run (measured for issue 3), since the small models scale poorly across threads. Pre-training and
# INC's chain carry a priority so the long chains start first. `--set-threads rule=N`
# overrides it, e.g. on a bigger machine.
include: "rules/common.smk"
include: "rules/workflow.smk"
include: "rules/unconditional.smk"
include: "rules/finetune.smk"
include: "rules/toy2d.smk"


rule all:
    input:
        expand(f"{RESULTS}/tables/{{task}}.csv", task=SUITE.tasks),
        expand(f"{RESULTS}/{{task}}/config.json", task=SUITE.tasks),
        EXTRA_TABLES,
        f"{RESULTS}/tables/benchmarks.csv",
        f"{RESULTS}/tables/reproduces.md",
