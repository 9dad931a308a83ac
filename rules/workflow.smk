# The workflow's own rules: each task's resolved config, the table of every job's time and
# memory, and the summary ("what reproduces" and the headline figure) read from the tables.
localrules:
    config,
    benchmarks,
    summary,


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
        lambda w: EXTRA_TABLES,  # filled by the rule files included after this one
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
        results=lambda w, output: Path(output.table).parents[1],
    shell:
        "{params.py} -m graftbench benchmarks --results {params.results}"
        " --table {output.table} > {log} 2>&1"


rule summary:
    input:
        expand(f"{RESULTS}/tables/{{task}}.csv", task=SUITE.tasks),
        lambda w: EXTRA_TABLES,
    output:
        table=report(
            f"{RESULTS}/tables/reproduces.md",
            caption="../report/reproduces.rst",
            category="workflow",
            labels={"kind": "what reproduces"},
        ),
        figure=report(
            f"{RESULTS}/figures/headline.png",
            caption="../report/headline.rst",
            category="workflow",
            labels={"kind": "headline figure"},
        ),
    log:
        f"{RESULTS}/logs/summary.log",
    params:
        py=PY,
        tables=lambda w, output: Path(output.table).parent,
        profile=SUITE.profile,
    shell:
        "{params.py} -m graftbench summary --tables {params.tables} --profile {params.profile}"
        " --out {output.table} --figure {output.figure} > {log} 2>&1"
