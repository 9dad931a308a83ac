# Reward fine-tuning tasks (t2i, layout, molecule: every task with a FinetuneTask), one rule per
# step with the task as a wildcard: data -> evaluation features -> pre-training -> the base
# evaluated per seed -> one fine-tuning run per method and seed (then evaluated) -> table and
# figures. What differs between tasks comes from their registry entries (graftbench.tasks):
# which steps they have, the files their runs read, and the config keys each step depends on.


localrules:
    finetune_table,


rule finetune_data:
    output:
        summary=f"{RESULTS}/{{task}}/data/summary.json",
    log:
        f"{RESULTS}/{{task}}/logs/data.log",
    benchmark:
        f"{RESULTS}/{{task}}/benchmarks/data.tsv"
    wildcard_constraints:
        task=one_of(WITH_DATA),
    threads: 1
    params:
        py=PY,
        config=lambda w: InlineConfig(w.task),
        config_slice=lambda w: config_slice(w.task, *keys(w.task, "data")),
    shell:
        "OMP_NUM_THREADS={threads} {params.py} -m graftbench prepare-data --task {wildcards.task}"
        " --config {params.config:q} --out $(dirname {output.summary}) > {log} 2>&1"


rule finetune_features:
    input:
        data=f"{RESULTS}/{{task}}/data/summary.json",
    output:
        net=f"{RESULTS}/{{task}}/features.pt",
        summary=f"{RESULTS}/{{task}}/features.json",
    log:
        f"{RESULTS}/{{task}}/logs/features.log",
    benchmark:
        f"{RESULTS}/{{task}}/benchmarks/features.tsv"
    wildcard_constraints:
        task=one_of(WITH_FEATURES),
    threads: 1
    params:
        py=PY,
        config=lambda w: InlineConfig(w.task),
        config_slice=lambda w: config_slice(w.task, *keys(w.task, "features")),
        device=SUITE.device,
    shell:
        "OMP_NUM_THREADS={threads} {params.py} -m graftbench train-features"
        " --task {wildcards.task} --config {params.config:q} --data $(dirname {input.data})"
        " --out {output.net} --log $(dirname {output.net})/features.jsonl"
        " --device {params.device} > {log} 2>&1"


rule finetune_pretrain:
    input:
        unpack(pretrain_inputs),
    output:
        model=f"{RESULTS}/{{task}}/model.pt",
        curve=f"{RESULTS}/{{task}}/pretrain.jsonl",
    log:
        f"{RESULTS}/{{task}}/logs/pretrain.log",
    benchmark:
        f"{RESULTS}/{{task}}/benchmarks/pretrain.tsv"
    wildcard_constraints:
        task=one_of(FT_TASKS),
    priority: lambda w: PRETRAIN_PRIORITY.get(w.task, 1)
    threads: 1
    params:
        py=PY,
        config=lambda w: InlineConfig(w.task),
        inputs=lambda w, input: cli_inputs(input),
        config_slice=lambda w: config_slice(w.task, *keys(w.task, "pretrain")),
        device=SUITE.device,
    shell:
        "OMP_NUM_THREADS={threads} {params.py} -m graftbench pretrain --task {wildcards.task}"
        " --config {params.config:q} {params.inputs} --out {output.model} --log {output.curve}"
        " --device {params.device} > {log} 2>&1"


rule finetune_base:
    input:
        unpack(run_inputs),
    output:
        metrics=f"{RESULTS}/{{task}}/base/seed{{seed}}/metrics.json",
        evaluation=f"{RESULTS}/{{task}}/base/seed{{seed}}/eval.json",
    log:
        f"{RESULTS}/{{task}}/logs/base_seed{{seed}}.log",
    benchmark:
        f"{RESULTS}/{{task}}/benchmarks/base_seed{{seed}}.tsv"
    wildcard_constraints:
        task=one_of(FT_TASKS),
    threads: 1
    params:
        py=PY,
        config=lambda w: InlineConfig(w.task),
        inputs=lambda w, input: cli_inputs(input),
        config_slice=lambda w: config_slice(w.task, *keys(w.task, "evaluate")),
        device=SUITE.device,
    shell:
        "OMP_NUM_THREADS={threads} {params.py} -m graftbench evaluate-model"
        " --task {wildcards.task} --config {params.config:q} --model {input.model} {params.inputs}"
        " --seed {wildcards.seed} --device {params.device}"
        " --out $(dirname {output.metrics}) > {log} 2>&1"


rule finetune_run:
    input:
        unpack(run_inputs),
        base=f"{RESULTS}/{{task}}/base/seed{{seed}}/metrics.json",
    output:
        metrics=f"{RESULTS}/{{task}}/{{run}}/seed{{seed}}/metrics.json",
        evaluation=f"{RESULTS}/{{task}}/{{run}}/seed{{seed}}/eval.json",
        rounds=f"{RESULTS}/{{task}}/{{run}}/seed{{seed}}/rounds.jsonl",
        model=f"{RESULTS}/{{task}}/{{run}}/seed{{seed}}/model.pt",
    log:
        f"{RESULTS}/{{task}}/logs/{{run}}_seed{{seed}}.log",
    benchmark:
        f"{RESULTS}/{{task}}/benchmarks/{{run}}_seed{{seed}}.tsv"
    wildcard_constraints:
        task=one_of(FT_TASKS),
    threads: 1
    resources:
        gpu=SUITE.finetune_gpus(),
    params:
        graftbench=SUITE.finetune_command(PY),
        config=lambda w: InlineConfig(w.task),
        inputs=lambda w, input: cli_inputs(input),
        config_slice=lambda w: config_slice(w.task, *run_keys(w.task, w.run)),
        device=SUITE.device,
    shell:
        "OMP_NUM_THREADS={threads} {params.graftbench} finetune --task {wildcards.task}"
        " --config {params.config:q} --model {input.model} {params.inputs} --run {wildcards.run}"
        " --seed {wildcards.seed} --base $(dirname {input.base}) --device {params.device}"
        " --out $(dirname {output.metrics}) > {log} 2>&1"


# the best_of_m reference: the base's best of M samples by the reward, no fine-tuning (so no
# model.pt or rounds.jsonl)
rule finetune_best_of_m:
    input:
        unpack(run_inputs),
        base=f"{RESULTS}/{{task}}/base/seed{{seed}}/metrics.json",
    output:
        metrics=f"{RESULTS}/{{task}}/best_of_m/seed{{seed}}/metrics.json",
        evaluation=f"{RESULTS}/{{task}}/best_of_m/seed{{seed}}/eval.json",
    log:
        f"{RESULTS}/{{task}}/logs/best_of_m_seed{{seed}}.log",
    benchmark:
        f"{RESULTS}/{{task}}/benchmarks/best_of_m_seed{{seed}}.tsv"
    wildcard_constraints:
        task=one_of(FT_TASKS),
    threads: 1
    params:
        py=PY,
        config=lambda w: InlineConfig(w.task),
        inputs=lambda w, input: cli_inputs(input),
        config_slice=lambda w: config_slice(w.task, *run_keys(w.task, "best_of_m")),
        device=SUITE.device,
    shell:
        "OMP_NUM_THREADS={threads} {params.py} -m graftbench finetune --task {wildcards.task}"
        " --config {params.config:q} --model {input.model} {params.inputs} --run best_of_m"
        " --seed {wildcards.seed} --base $(dirname {input.base}) --device {params.device}"
        " --out $(dirname {output.metrics}) > {log} 2>&1"


rule finetune_table:
    input:
        table_inputs,
    output:
        table=report(
            f"{RESULTS}/tables/{{task}}.csv",
            caption="../report/finetune_table.rst",
            category="{task}",
            labels={"kind": "table"},
        ),
        md=f"{RESULTS}/tables/{{task}}.md",
        curve=report(
            f"{RESULTS}/figures/{{task}}_reward_vs_queries.png",
            caption="../report/finetune_reward_vs_queries.rst",
            category="{task}",
            labels={"kind": "reward vs queries"},
        ),
        ni=report(
            f"{RESULTS}/figures/{{task}}_pgraft_vs_ni.png",
            caption="../report/finetune_pgraft_vs_ni.rst",
            category="{task}",
            labels={"kind": "P-GRAFT vs N_I"},
        ),
        samples=report(
            f"{RESULTS}/figures/{{task}}_samples.png",
            caption="../report/finetune_samples.rst",
            category="{task}",
            labels={"kind": "samples"},
        ),
    log:
        f"{RESULTS}/{{task}}/logs/aggregate.log",
    benchmark:
        f"{RESULTS}/{{task}}/benchmarks/aggregate.tsv"
    wildcard_constraints:
        task=one_of(FT_TASKS),
    params:
        py=PY,
        profile=SUITE.profile,
        results=lambda w: f"{RESULTS}/{w.task}",
    shell:
        "{params.py} -m graftbench aggregate --task {wildcards.task}"
        " --results {params.results} --profile {params.profile}"
        " --table {output.table} --figure {output.curve} --figure {output.ni}"
        " --figure {output.samples} > {log} 2>&1"
