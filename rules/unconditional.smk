# Unconditional generation: data -> FID feature net -> rectified-flow pre-training ->
# sampling at each step count and seed -> FID -> table and figure.
UNC = f"{RESULTS}/unconditional"
UNC_CFG = resolve(config, "unconditional")
UNC_BACKENDS = " ".join(f"--backend {b}" for b in UNC_CFG.evaluate.fid_backends)


rule unconditional_data:
    output:
        train=f"{UNC}/data/train.npz",
        test=directory(f"{UNC}/data/test"),
        subset=directory(f"{UNC}/data/train_subset"),
    log:
        f"{UNC}/logs/data.log",
    conda:
        "../envs/graftbench.yaml"
    params:
        py=PY,
        cfg=CONFIGS["unconditional"],
    shell:
        "{params.py} -m graftbench prepare-data --config {params.cfg:q}"
        " --out $(dirname {output.train}) > {log} 2>&1"


rule unconditional_features:
    input:
        rules.unconditional_data.output.train,
    output:
        f"{UNC}/features.pt",
    log:
        f"{UNC}/logs/features.log",
    conda:
        "../envs/graftbench.yaml"
    threads: 2
    params:
        py=PY,
        cfg=CONFIGS["unconditional"],
    shell:
        "OMP_NUM_THREADS={threads} {params.py} -m graftbench train-features"
        " --config {params.cfg:q} --data $(dirname {input}) --out {output} > {log} 2>&1"


rule unconditional_pretrain:
    input:
        rules.unconditional_data.output.train,
    output:
        model=f"{UNC}/model.pt",
        curve=f"{UNC}/pretrain.jsonl",
    log:
        f"{UNC}/logs/pretrain.log",
    conda:
        "../envs/graftbench.yaml"
    threads: 2
    params:
        py=PY,
        cfg=CONFIGS["unconditional"],
    shell:
        "OMP_NUM_THREADS={threads} {params.py} -m graftbench pretrain --config {params.cfg:q}"
        " --data $(dirname {input}) --out {output.model} --log {output.curve} > {log} 2>&1"


rule unconditional_sample:
    input:
        f"{UNC}/model.pt",
    output:
        metrics=f"{UNC}/base_{{solver}}{{steps}}/seed{{seed}}/metrics.json",
        samples=directory(f"{UNC}/base_{{solver}}{{steps}}/seed{{seed}}/samples"),
    log:
        f"{UNC}/logs/sample_{{solver}}{{steps}}_seed{{seed}}.log",
    wildcard_constraints:
        solver="euler|heun",
        steps=r"\d+",
        seed=r"\d+",
    conda:
        "../envs/graftbench.yaml"
    threads: 2
    params:
        py=PY,
        cfg=CONFIGS["unconditional"],
        device=SUITE.device,
    shell:
        "OMP_NUM_THREADS={threads} {params.py} -m graftbench sample --config {params.cfg:q}"
        " --model {input} --steps {wildcards.steps} --seed {wildcards.seed}"
        " --device {params.device} --out $(dirname {output.metrics}) > {log} 2>&1"


rule unconditional_evaluate:
    input:
        samples=f"{UNC}/{{run}}/seed{{seed}}/samples",
        reference=rules.unconditional_data.output.test,
        features=rules.unconditional_features.output,
    output:
        f"{UNC}/{{run}}/seed{{seed}}/eval.json",
    log:
        f"{UNC}/logs/evaluate_{{run}}_seed{{seed}}.log",
    conda:
        "../envs/graftbench.yaml"
    threads: 1
    params:
        py=PY,
        backends=UNC_BACKENDS,
        device=SUITE.device,
    shell:
        "OMP_NUM_THREADS={threads} {params.py} -m graftbench evaluate --samples {input.samples}"
        " --reference {input.reference} {params.backends} --feature-net {input.features}"
        " --device {params.device} --out {output} > {log} 2>&1"


rule unconditional_real_floor:
    input:
        samples=rules.unconditional_data.output.subset,
        reference=rules.unconditional_data.output.test,
        features=rules.unconditional_features.output,
    output:
        f"{UNC}/real_data_eval.json",
    log:
        f"{UNC}/logs/evaluate_real.log",
    conda:
        "../envs/graftbench.yaml"
    params:
        py=PY,
        backends=UNC_BACKENDS,
        device=SUITE.device,
    shell:
        "{params.py} -m graftbench evaluate --samples {input.samples}"
        " --reference {input.reference} {params.backends} --feature-net {input.features}"
        " --device {params.device} --out {output} > {log} 2>&1"


rule unconditional_table:
    input:
        runs=expand(
            f"{UNC}/base_{UNC_CFG.sample.solver}{{steps}}/seed{{seed}}/{{f}}",
            steps=UNC_CFG.sample.steps,
            seed=UNC_CFG.seeds,
            f=["metrics.json", "eval.json"],
        ),
        floor=rules.unconditional_real_floor.output,
    output:
        table=report(
            f"{RESULTS}/tables/unconditional.csv",
            caption="../report/unconditional_table.rst",
            category="unconditional",
            subcategory="base",
            labels={"kind": "table"},
        ),
        md=f"{RESULTS}/tables/unconditional.md",
        figure=report(
            f"{RESULTS}/figures/unconditional_fid_vs_flops.png",
            caption="../report/unconditional_figure.rst",
            category="unconditional",
            subcategory="base",
            labels={"kind": "FID vs FLOPs"},
        ),
    log:
        f"{UNC}/logs/aggregate.log",
    conda:
        "../envs/graftbench.yaml"
    params:
        py=PY,
        profile=SUITE.profile,
    shell:
        "{params.py} -m graftbench aggregate --task unconditional"
        " --results $(dirname {input.floor}) --profile {params.profile}"
        " --table {output.table} --figure {output.figure} > {log} 2>&1"
