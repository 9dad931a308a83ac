# graftbench workflow. Plain `snakemake --cores N` runs the cpu profile; choose another with
# `--profile profiles/<smoke|cpu|gpu|paper|slurm>`. Logic lives in `python -m graftbench <verb>`.
import sys

from snakemake.utils import min_version, validate

from graftbench import tasks
from graftbench.spec import resolve, suite

min_version("9.0")


configfile: "config/config.yaml"
configfile: "tasks/unconditional.yaml"
configfile: "tasks/t2i.yaml"
configfile: "tasks/layout.yaml"
configfile: "tasks/molecule.yaml"
configfile: "tasks/toy2d.yaml"


validate(
    config, "config/schema.yaml", set_default=False
)  # presets hold differences only
SUITE = suite(config)  # typed checks the schema cannot express (enabled tasks, presets)
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
