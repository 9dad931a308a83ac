# Unconditional generation: data -> FID feature net -> rectified-flow pre-training ->
# sampling at each step count and seed -> FID -> table and figure.
UNC = f"{RESULTS}/unconditional"
UNC_CFG = resolve(config, "unconditional")


rule unconditional_data:
    output:
        train=f"{UNC}/data/train.npz",
        test=directory(f"{UNC}/data/test"),
        subset=directory(f"{UNC}/data/train_subset"),
    params:
        cfg=CONFIGS["unconditional"],
    log:
        f"{UNC}/logs/data.log",
    shell:
        "{PY} -m graftbench prepare-data --config {params.cfg:q} --out {UNC}/data > {log} 2>&1"


rule unconditional_features:
    input:
        rules.unconditional_data.output.train,
    output:
        f"{UNC}/features.pt",
    params:
        cfg=CONFIGS["unconditional"],
    threads: 2
    log:
        f"{UNC}/logs/features.log",
    shell:
        "OMP_NUM_THREADS={threads} {PY} -m graftbench train-features --config {params.cfg:q}"
        " --data {UNC}/data --out {output} > {log} 2>&1"


rule unconditional_pretrain:
    input:
        rules.unconditional_data.output.train,
    output:
        f"{UNC}/model.pt",
    params:
        cfg=CONFIGS["unconditional"],
    threads: 2
    log:
        f"{UNC}/logs/pretrain.log",
    shell:
        "OMP_NUM_THREADS={threads} {PY} -m graftbench pretrain --config {params.cfg:q}"
        " --data {UNC}/data --out {output} --log {UNC}/logs/pretrain.jsonl > {log} 2>&1"


rule unconditional_sample:
    input:
        rules.unconditional_pretrain.output,
    output:
        metrics=f"{UNC}/base_{{solver}}{{steps}}/seed{{seed}}/metrics.json",
        samples=directory(f"{UNC}/base_{{solver}}{{steps}}/seed{{seed}}/samples"),
    params:
        cfg=CONFIGS["unconditional"],
        device=SUITE.device,
    wildcard_constraints:
        solver="euler|heun",
        steps=r"\d+",
        seed=r"\d+",
    threads: 2
    log:
        f"{UNC}/logs/sample_{{solver}}{{steps}}_seed{{seed}}.log",
    shell:
        "OMP_NUM_THREADS={threads} {PY} -m graftbench sample --config {params.cfg:q}"
        " --model {input} --steps {wildcards.steps} --seed {wildcards.seed}"
        " --device {params.device} --out $(dirname {output.metrics}) > {log} 2>&1"


def fid_backend_args(wildcards=None):
    return " ".join(f"--backend {b}" for b in UNC_CFG.evaluate.fid_backends)


rule unconditional_evaluate:
    input:
        samples=f"{UNC}/{{run}}/seed{{seed}}/samples",
        reference=rules.unconditional_data.output.test,
        features=rules.unconditional_features.output,
    output:
        f"{UNC}/{{run}}/seed{{seed}}/eval.json",
    params:
        backends=fid_backend_args(),
        device=SUITE.device,
    threads: 1
    log:
        f"{UNC}/logs/evaluate_{{run}}_seed{{seed}}.log",
    shell:
        "OMP_NUM_THREADS={threads} {PY} -m graftbench evaluate --samples {input.samples}"
        " --reference {input.reference} {params.backends} --feature-net {input.features}"
        " --device {params.device} --out {output} > {log} 2>&1"


rule unconditional_real_floor:
    input:
        samples=rules.unconditional_data.output.subset,
        reference=rules.unconditional_data.output.test,
        features=rules.unconditional_features.output,
    output:
        f"{UNC}/real_data_eval.json",
    params:
        backends=fid_backend_args(),
        device=SUITE.device,
    log:
        f"{UNC}/logs/evaluate_real.log",
    shell:
        "{PY} -m graftbench evaluate --samples {input.samples} --reference {input.reference}"
        " {params.backends} --feature-net {input.features} --device {params.device}"
        " --out {output} > {log} 2>&1"


rule unconditional_table:
    input:
        expand(
            f"{UNC}/base_{UNC_CFG.sample.solver}{{steps}}/seed{{seed}}/{{f}}",
            steps=UNC_CFG.sample.steps,
            seed=UNC_CFG.seeds,
            f=["metrics.json", "eval.json"],
        ),
        floor=rules.unconditional_real_floor.output,
    output:
        table=f"{RESULTS}/tables/unconditional.csv",
        md=f"{RESULTS}/tables/unconditional.md",
        figure=f"{RESULTS}/figures/unconditional_fid_vs_flops.png",
    log:
        f"{UNC}/logs/aggregate.log",
    shell:
        "{PY} -m graftbench aggregate --task unconditional --results {UNC} --profile {SUITE.profile}"
        " --table {output.table} --figure {output.figure} > {log} 2>&1"
