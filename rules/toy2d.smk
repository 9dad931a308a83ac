# The toy2d task's analyses beside its fine-tuning table (rules/finetune.smk runs its
# pre-training, base, runs and table): Var[r(x_0) | x_t] along the base's sampler, which the
# table's P-GRAFT figure shows, and inverse noise correction on the same base against the
# exact data law, in its own table and figure.
if "toy2d" in SUITE.tasks:
    TOY = f"{RESULTS}/toy2d"
    TOY_CFG = resolve(config, "toy2d")
    EXTRA_TABLES.append(f"{RESULTS}/tables/toy2d_inc.csv")

    localrules:
        toy2d_inc_table,

    rule toy2d_variance:
        input:
            model=f"{TOY}/model.pt",
        output:
            f"{TOY}/variance.json",
        log:
            f"{TOY}/logs/variance.log",
        benchmark:
            f"{TOY}/benchmarks/variance.tsv"
        threads: 1
        params:
            py=PY,
            config=InlineConfig("toy2d"),
            config_slice=config_slice("toy2d", *keys("toy2d", "variance")),
            device=SUITE.device,
        shell:
            "OMP_NUM_THREADS={threads} {params.py} -m graftbench reward-variance --task toy2d"
            " --config {params.config:q} --model {input.model} --out {output}"
            " --device {params.device} > {log} 2>&1"

    rule toy2d_inc:
        input:
            model=f"{TOY}/model.pt",
        output:
            f"{TOY}/inc/seed{{seed}}.json",
        log:
            f"{TOY}/logs/inc_seed{{seed}}.log",
        benchmark:
            f"{TOY}/benchmarks/inc_seed{{seed}}.tsv"
        threads: 1
        params:
            py=PY,
            config=InlineConfig("toy2d"),
            config_slice=config_slice("toy2d", *keys("toy2d", "inc")),
            device=SUITE.device,
        shell:
            "OMP_NUM_THREADS={threads} {params.py} -m graftbench inc-frontier --task toy2d"
            " --config {params.config:q} --model {input.model} --seed {wildcards.seed}"
            " --out {output} --device {params.device} > {log} 2>&1"

    rule toy2d_inc_table:
        input:
            runs=expand(f"{TOY}/inc/seed{{seed}}.json", seed=TOY_CFG.seeds),
            config=f"{TOY}/config.json",
        output:
            table=report(
                f"{RESULTS}/tables/toy2d_inc.csv",
                caption="../report/toy2d_inc.rst",
                category="toy2d",
                labels={"kind": "INC table"},
            ),
            md=f"{RESULTS}/tables/toy2d_inc.md",
            figure=report(
                f"{RESULTS}/figures/toy2d_inc_frontier.png",
                caption="../report/toy2d_inc.rst",
                category="toy2d",
                labels={"kind": "INC frontier"},
            ),
        log:
            f"{TOY}/logs/inc_table.log",
        benchmark:
            f"{TOY}/benchmarks/inc_table.tsv"
        params:
            py=PY,
            profile=SUITE.profile,
        shell:
            "{params.py} -m graftbench aggregate --task toy2d --inc"
            " --results $(dirname {input.config}) --profile {params.profile}"
            " --table {output.table} --figure {output.figure} > {log} 2>&1"
