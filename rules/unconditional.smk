# Unconditional generation: data -> FID feature net -> rectified-flow pre-training ->
# sampling at each step count and seed -> FID -> table and figure; inverse noise correction
# (invert, corrector, sampling through both) beside it in its own table.
if "unconditional" in SUITE.tasks:
    UNC = f"{RESULTS}/unconditional"
    UNC_CFG = resolve(config, "unconditional")
    UNC_BACKENDS = " ".join(f"--backend {b}" for b in UNC_CFG.evaluate.fid_backends)
    UNC_KEYS = TASKS["unconditional"].config_keys
    UNC_CONFIG = InlineConfig("unconditional")
    if "inc" in UNC_CFG.methods:
        EXTRA_TABLES.append(f"{RESULTS}/tables/inc.csv")

    localrules:
        unconditional_table,
        inc_table,

    rule unconditional_data:
        output:
            train=f"{UNC}/data/train.npz",
            test=directory(f"{UNC}/data/test"),
            subset=directory(f"{UNC}/data/train_subset"),
        log:
            f"{UNC}/logs/data.log",
        benchmark:
            f"{UNC}/benchmarks/data.tsv"
        params:
            py=PY,
            config=UNC_CONFIG,
            config_slice=config_slice("unconditional", *UNC_KEYS["data"]),
        shell:
            "{params.py} -m graftbench prepare-data --task unconditional"
            " --config {params.config:q} --out $(dirname {output.train}) > {log} 2>&1"

    rule unconditional_features:
        input:
            train=rules.unconditional_data.output.train,
        output:
            f"{UNC}/features.pt",
        log:
            f"{UNC}/logs/features.log",
        benchmark:
            f"{UNC}/benchmarks/features.tsv"
        threads: 1
        params:
            py=PY,
            config=UNC_CONFIG,
            config_slice=config_slice("unconditional", *UNC_KEYS["features"]),
            device=SUITE.device,
        shell:
            "OMP_NUM_THREADS={threads} {params.py} -m graftbench train-features"
            " --task unconditional --config {params.config:q} --data $(dirname {input.train})"
            " --out {output} --device {params.device} > {log} 2>&1"

    rule unconditional_pretrain:
        input:
            train=rules.unconditional_data.output.train,
        output:
            model=f"{UNC}/model.pt",
            curve=f"{UNC}/pretrain.jsonl",
        log:
            f"{UNC}/logs/pretrain.log",
        benchmark:
            f"{UNC}/benchmarks/pretrain.tsv"
        priority: 2
        threads: 1
        params:
            py=PY,
            config=UNC_CONFIG,
            config_slice=config_slice("unconditional", *UNC_KEYS["pretrain"]),
            device=SUITE.device,
        shell:
            "OMP_NUM_THREADS={threads} {params.py} -m graftbench pretrain --task unconditional"
            " --config {params.config:q} --data $(dirname {input.train}) --out {output.model}"
            " --log {output.curve} --device {params.device} > {log} 2>&1"

    rule unconditional_sample:
        input:
            model=rules.unconditional_pretrain.output.model,
        output:
            metrics=f"{UNC}/base_{{solver}}{{steps}}/seed{{seed}}/metrics.json",
            samples=directory(f"{UNC}/base_{{solver}}{{steps}}/seed{{seed}}/samples"),
        log:
            f"{UNC}/logs/sample_{{solver}}{{steps}}_seed{{seed}}.log",
        benchmark:
            f"{UNC}/benchmarks/sample_{{solver}}{{steps}}_seed{{seed}}.tsv"
        threads: 1
        params:
            py=PY,
            config=UNC_CONFIG,
            config_slice=config_slice("unconditional", *UNC_KEYS["sample"]),
            device=SUITE.device,
        shell:
            "OMP_NUM_THREADS={threads} {params.py} -m graftbench sample --task unconditional"
            " --config {params.config:q} --model {input.model} --steps {wildcards.steps}"
            " --seed {wildcards.seed} --device {params.device}"
            " --out $(dirname {output.metrics}) > {log} 2>&1"

    rule unconditional_evaluate:
        input:
            samples=f"{UNC}/{{run}}/seed{{seed}}/samples",
            reference=rules.unconditional_data.output.test,
            features=rules.unconditional_features.output,
        output:
            f"{UNC}/{{run}}/seed{{seed}}/eval.json",
        log:
            f"{UNC}/logs/evaluate_{{run}}_seed{{seed}}.log",
        benchmark:
            f"{UNC}/benchmarks/evaluate_{{run}}_seed{{seed}}.tsv"
        wildcard_constraints:
            run=r"base_(euler|heun)\d+|inc_euler\d+_c\d+",
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
        benchmark:
            f"{UNC}/benchmarks/evaluate_real.tsv"
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
        benchmark:
            f"{UNC}/benchmarks/aggregate.tsv"
        params:
            py=PY,
            profile=SUITE.profile,
        shell:
            "{params.py} -m graftbench aggregate --task unconditional"
            " --results $(dirname {input.floor}) --profile {params.profile}"
            " --table {output.table} --figure {output.figure} > {log} 2>&1"

    # Inverse noise correction: invert training images through the base Euler sampler (one
    # inversion and one corrector per base step count), then sample corrector -> base.
    rule unconditional_invert:
        input:
            model=rules.unconditional_pretrain.output.model,
            train=rules.unconditional_data.output.train,
        output:
            noise=f"{UNC}/inc/invert_{{steps}}.pt",
            summary=f"{UNC}/inc/invert_{{steps}}.json",
        log:
            f"{UNC}/logs/invert_{{steps}}.log",
        benchmark:
            f"{UNC}/benchmarks/invert_{{steps}}.tsv"
        priority: 2
        threads: 1
        params:
            py=PY,
            config=UNC_CONFIG,
            config_slice=config_slice("unconditional", *UNC_KEYS["invert"]),
            device=SUITE.device,
        shell:
            "OMP_NUM_THREADS={threads} {params.py} -m graftbench invert --task unconditional"
            " --config {params.config:q} --data $(dirname {input.train}) --model {input.model}"
            " --steps {wildcards.steps} --out {output.noise} --device {params.device}"
            " > {log} 2>&1"

    rule unconditional_corrector:
        input:
            noise=f"{UNC}/inc/invert_{{steps}}.pt",
        output:
            model=f"{UNC}/inc/corrector_{{steps}}.pt",
            summary=f"{UNC}/inc/corrector_{{steps}}.json",
            curve=f"{UNC}/inc/corrector_{{steps}}.jsonl",
        log:
            f"{UNC}/logs/corrector_{{steps}}.log",
        benchmark:
            f"{UNC}/benchmarks/corrector_{{steps}}.tsv"
        priority: 2
        threads: 1
        params:
            py=PY,
            config=UNC_CONFIG,
            config_slice=config_slice("unconditional", *UNC_KEYS["corrector"]),
            device=SUITE.device,
        shell:
            "OMP_NUM_THREADS={threads} {params.py} -m graftbench train-corrector"
            " --task unconditional --config {params.config:q} --noise {input.noise}"
            " --out {output.model} --log {output.curve} --device {params.device} > {log} 2>&1"

    rule unconditional_sample_inc:
        input:
            model=rules.unconditional_pretrain.output.model,
            corrector=f"{UNC}/inc/corrector_{{steps}}.pt",
        output:
            metrics=f"{UNC}/inc_euler{{steps}}_c{{csteps}}/seed{{seed}}/metrics.json",
            samples=directory(
                f"{UNC}/inc_euler{{steps}}_c{{csteps}}/seed{{seed}}/samples"
            ),
        log:
            f"{UNC}/logs/sample_inc_euler{{steps}}_c{{csteps}}_seed{{seed}}.log",
        benchmark:
            f"{UNC}/benchmarks/sample_inc_euler{{steps}}_c{{csteps}}_seed{{seed}}.tsv"
        threads: 1
        params:
            py=PY,
            config=UNC_CONFIG,
            config_slice=config_slice("unconditional", *UNC_KEYS["sample_inc"]),
            device=SUITE.device,
        shell:
            "OMP_NUM_THREADS={threads} {params.py} -m graftbench sample --task unconditional"
            " --config {params.config:q} --model {input.model} --steps {wildcards.steps}"
            " --seed {wildcards.seed} --corrector {input.corrector}"
            " --corrector-steps {wildcards.csteps} --device {params.device}"
            " --out $(dirname {output.metrics}) > {log} 2>&1"

    rule inc_table:
        input:
            base=expand(
                f"{UNC}/base_euler{{steps}}/seed{{seed}}/{{f}}",
                steps=UNC_CFG.sample.steps,
                seed=UNC_CFG.seeds,
                f=["metrics.json", "eval.json"],
            ),
            inc=expand(
                f"{UNC}/inc_euler{{steps}}_c{{csteps}}/seed{{seed}}/{{f}}",
                steps=UNC_CFG.inc.base_steps,
                csteps=UNC_CFG.inc.corrector_steps,
                seed=UNC_CFG.seeds,
                f=["metrics.json", "eval.json"],
            ),
            diagnostics=expand(
                f"{UNC}/inc/{{kind}}_{{steps}}.json",
                kind=["invert", "corrector"],
                steps=UNC_CFG.inc.base_steps,
            ),
            floor=rules.unconditional_real_floor.output,
        output:
            table=report(
                f"{RESULTS}/tables/inc.csv",
                caption="../report/inc_table.rst",
                category="unconditional",
                subcategory="inc",
                labels={"kind": "table"},
            ),
            md=f"{RESULTS}/tables/inc.md",
            figure=report(
                f"{RESULTS}/figures/inc_fid_vs_flops.png",
                caption="../report/inc_figure.rst",
                category="unconditional",
                subcategory="inc",
                labels={"kind": "FID vs FLOPs"},
            ),
        log:
            f"{UNC}/logs/aggregate_inc.log",
        benchmark:
            f"{UNC}/benchmarks/aggregate_inc.tsv"
        params:
            py=PY,
            profile=SUITE.profile,
        shell:
            "{params.py} -m graftbench aggregate --task unconditional --inc"
            " --results $(dirname {input.floor}) --profile {params.profile}"
            " --table {output.table} --figure {output.figure} > {log} 2>&1"
