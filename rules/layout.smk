# Class-conditional layout generation: data -> layout-FID network and box-diffusion
# pre-training -> evaluate the base per seed -> fine-tune with each method per seed (then
# evaluate) -> table and figures.
if "layout" in SUITE.tasks:
    LAY = f"{RESULTS}/layout"
    LAY_CFG = resolve(config, "layout")
    LAY_RUNS = LAY_CFG.runs()
    LAY_DATA = ("source", "data", "coco")
    LAY_EVAL = (*LAY_DATA, "features", "finetune_conditions", "reward", "evaluate")

    rule layout_data:
        output:
            train=f"{LAY}/data/train.json",
            test=f"{LAY}/data/test.json",
            summary=f"{LAY}/data/summary.json",
        log:
            f"{LAY}/logs/data.log",
        conda:
            "../envs/graftbench.yaml"
        params:
            py=PY,
            cfg=CONFIGS["layout"],
            config_slice=config_slice("layout", *LAY_DATA, "reward"),
        shell:
            "{params.py} -m graftbench prepare-data --task layout --config {params.cfg:q}"
            " --out $(dirname {output.train}) > {log} 2>&1"

    rule layout_features:
        input:
            rules.layout_data.output.summary,
        output:
            net=f"{LAY}/features.pt",
            summary=f"{LAY}/features.json",
        log:
            f"{LAY}/logs/features.log",
        conda:
            "../envs/graftbench.yaml"
        threads: 1
        params:
            py=PY,
            cfg=CONFIGS["layout"],
            config_slice=config_slice("layout", *LAY_DATA, "features", "evaluate"),
            device=SUITE.device,
        shell:
            "OMP_NUM_THREADS={threads} {params.py} -m graftbench train-features --task layout"
            " --config {params.cfg:q} --data $(dirname {input}) --out {output.net}"
            " --log $(dirname {output.net})/features.jsonl --device {params.device} > {log} 2>&1"

    rule layout_pretrain:
        input:
            rules.layout_data.output.summary,
        output:
            model=f"{LAY}/model.pt",
            curve=f"{LAY}/pretrain.jsonl",
        log:
            f"{LAY}/logs/pretrain.log",
        priority: 1
        conda:
            "../envs/graftbench.yaml"
        threads: 1
        params:
            py=PY,
            cfg=CONFIGS["layout"],
            config_slice=config_slice("layout", *LAY_DATA, "model", "pretrain"),
            device=SUITE.device,
        shell:
            "OMP_NUM_THREADS={threads} {params.py} -m graftbench pretrain --task layout"
            " --config {params.cfg:q} --data $(dirname {input}) --out {output.model}"
            " --log {output.curve} --device {params.device} > {log} 2>&1"

    rule layout_base:
        input:
            model=rules.layout_pretrain.output.model,
            features=rules.layout_features.output.net,
            data=rules.layout_data.output.summary,
        output:
            metrics=f"{LAY}/base/seed{{seed}}/metrics.json",
            evaluation=f"{LAY}/base/seed{{seed}}/eval.json",
            boxes=f"{LAY}/base/seed{{seed}}/boxes.npz",
            samples=f"{LAY}/base/seed{{seed}}/samples.json",
        log:
            f"{LAY}/logs/base_seed{{seed}}.log",
        wildcard_constraints:
            seed=r"\d+",
        conda:
            "../envs/graftbench.yaml"
        threads: 1
        params:
            py=PY,
            cfg=CONFIGS["layout"],
            config_slice=config_slice("layout", *LAY_EVAL),
            device=SUITE.device,
        shell:
            "OMP_NUM_THREADS={threads} {params.py} -m graftbench evaluate-model --task layout"
            " --config {params.cfg:q} --model {input.model} --data $(dirname {input.data})"
            " --features {input.features} --seed {wildcards.seed} --device {params.device}"
            " --out $(dirname {output.metrics}) > {log} 2>&1"

    rule layout_finetune:
        input:
            model=rules.layout_pretrain.output.model,
            features=rules.layout_features.output.net,
            data=rules.layout_data.output.summary,
            base=f"{LAY}/base/seed{{seed}}/boxes.npz",
        output:
            metrics=f"{LAY}/{{run}}/seed{{seed}}/metrics.json",
            evaluation=f"{LAY}/{{run}}/seed{{seed}}/eval.json",
            boxes=f"{LAY}/{{run}}/seed{{seed}}/boxes.npz",
            samples=f"{LAY}/{{run}}/seed{{seed}}/samples.json",
            rounds=f"{LAY}/{{run}}/seed{{seed}}/rounds.jsonl",
            model=f"{LAY}/{{run}}/seed{{seed}}/model.pt",
        log:
            f"{LAY}/logs/{{run}}_seed{{seed}}.log",
        wildcard_constraints:
            run=r"graft|graft_threshold|ddpo|pgraft\d+",
            seed=r"\d+",
        conda:
            "../envs/graftbench.yaml"
        threads: 1
        resources:
            gpu=SUITE.finetune_gpus(),
        params:
            graftbench=SUITE.finetune_command(PY),
            cfg=CONFIGS["layout"],
            # the method's own section (pgraft's N_I list is swept in the wildcard)
            config_slice=lambda w: config_slice(
                "layout",
                *LAY_EVAL,
                *(
                    [
                        "pgraft.loop",
                        "pgraft.selection",
                        "pgraft.optim",
                        "pgraft.epochs",
                    ]
                    if w.run.startswith("pgraft")
                    else [w.run]
                ),
            ),
            device=SUITE.device,
        shell:
            "OMP_NUM_THREADS={threads} {params.graftbench} finetune --task layout"
            " --config {params.cfg:q} --model {input.model} --data $(dirname {input.data})"
            " --features {input.features} --run {wildcards.run} --seed {wildcards.seed}"
            " --base-images {input.base} --device {params.device}"
            " --out $(dirname {output.metrics}) > {log} 2>&1"

    rule layout_table:
        input:
            expand(
                f"{LAY}/{{run}}/seed{{seed}}/{{f}}",
                run=LAY_RUNS,
                seed=LAY_CFG.seeds,
                f=["metrics.json", "eval.json", "samples.json"],
            ),
            f"{LAY}/features.json",
            f"{LAY}/data/summary.json",
        output:
            table=report(
                f"{RESULTS}/tables/layout.csv",
                caption="../report/layout_table.rst",
                category="layout",
                labels={"kind": "table"},
            ),
            md=f"{RESULTS}/tables/layout.md",
            curve=report(
                f"{RESULTS}/figures/layout_reward_vs_queries.png",
                caption="../report/layout_reward_vs_queries.rst",
                category="layout",
                labels={"kind": "reward vs queries"},
            ),
            ni=report(
                f"{RESULTS}/figures/layout_pgraft_vs_ni.png",
                caption="../report/layout_pgraft_vs_ni.rst",
                category="layout",
                labels={"kind": "P-GRAFT vs N_I"},
            ),
            samples=report(
                f"{RESULTS}/figures/layout_samples.png",
                caption="../report/layout_samples.rst",
                category="layout",
                labels={"kind": "samples"},
            ),
        log:
            f"{LAY}/logs/aggregate.log",
        conda:
            "../envs/graftbench.yaml"
        params:
            py=PY,
            profile=SUITE.profile,
            # the task folder: {LAY}/{run}/seed{n}/metrics.json -> {LAY}
            results=lambda w, input: str(Path(input[0]).parents[2]),
        shell:
            "{params.py} -m graftbench aggregate --task layout --results {params.results}"
            " --profile {params.profile} --table {output.table} --figure {output.curve}"
            " --figure {output.ni} --figure {output.samples} > {log} 2>&1"
