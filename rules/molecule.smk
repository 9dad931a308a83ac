# Unconditional molecule generation (QM9 SMILES): data -> masked-diffusion pre-training ->
# evaluate the base per seed -> fine-tune with each method per seed (then evaluate) -> table
# and figures.
if "molecule" in SUITE.tasks:
    MOL = f"{RESULTS}/molecule"
    MOL_CFG = resolve(config, "molecule")
    MOL_RUNS = MOL_CFG.runs()
    MOL_EVAL = ("data", "reward", "evaluate")

    rule molecule_data:
        output:
            train=f"{MOL}/data/train.smi",
            test=f"{MOL}/data/test.smi",
            summary=f"{MOL}/data/summary.json",
        log:
            f"{MOL}/logs/data.log",
        conda:
            "../envs/graftbench.yaml"
        threads: 1
        params:
            py=PY,
            cfg=CONFIGS["molecule"],
            config_slice=config_slice(
                "molecule", *MOL_EVAL, "model.length", "model.representation"
            ),
        shell:
            "OMP_NUM_THREADS={threads} {params.py} -m graftbench prepare-data --task molecule"
            " --config {params.cfg:q} --out $(dirname {output.train}) > {log} 2>&1"

    rule molecule_pretrain:
        input:
            rules.molecule_data.output.summary,
        output:
            model=f"{MOL}/model.pt",
            curve=f"{MOL}/pretrain.jsonl",
        log:
            f"{MOL}/logs/pretrain.log",
        priority: 1
        conda:
            "../envs/graftbench.yaml"
        threads: 1
        params:
            py=PY,
            cfg=CONFIGS["molecule"],
            config_slice=config_slice("molecule", "data", "model", "pretrain"),
            device=SUITE.device,
        shell:
            "OMP_NUM_THREADS={threads} {params.py} -m graftbench pretrain --task molecule"
            " --config {params.cfg:q} --data $(dirname {input}) --out {output.model}"
            " --log {output.curve} --device {params.device} > {log} 2>&1"

    rule molecule_base:
        input:
            model=rules.molecule_pretrain.output.model,
            data=rules.molecule_data.output.summary,
        output:
            metrics=f"{MOL}/base/seed{{seed}}/metrics.json",
            evaluation=f"{MOL}/base/seed{{seed}}/eval.json",
            tokens=f"{MOL}/base/seed{{seed}}/tokens.npz",
            samples=f"{MOL}/base/seed{{seed}}/samples.tsv",
        log:
            f"{MOL}/logs/base_seed{{seed}}.log",
        wildcard_constraints:
            seed=r"\d+",
        conda:
            "../envs/graftbench.yaml"
        threads: 1
        params:
            py=PY,
            cfg=CONFIGS["molecule"],
            config_slice=config_slice("molecule", *MOL_EVAL),
            device=SUITE.device,
        shell:
            "OMP_NUM_THREADS={threads} {params.py} -m graftbench evaluate-model --task molecule"
            " --config {params.cfg:q} --model {input.model} --data $(dirname {input.data})"
            " --seed {wildcards.seed} --device {params.device}"
            " --out $(dirname {output.metrics}) > {log} 2>&1"

    rule molecule_finetune:
        input:
            model=rules.molecule_pretrain.output.model,
            data=rules.molecule_data.output.summary,
            base=f"{MOL}/base/seed{{seed}}/tokens.npz",
        output:
            metrics=f"{MOL}/{{run}}/seed{{seed}}/metrics.json",
            evaluation=f"{MOL}/{{run}}/seed{{seed}}/eval.json",
            tokens=f"{MOL}/{{run}}/seed{{seed}}/tokens.npz",
            samples=f"{MOL}/{{run}}/seed{{seed}}/samples.tsv",
            rounds=f"{MOL}/{{run}}/seed{{seed}}/rounds.jsonl",
            model=f"{MOL}/{{run}}/seed{{seed}}/model.pt",
        log:
            f"{MOL}/logs/{{run}}_seed{{seed}}.log",
        wildcard_constraints:
            run=r"graft|graft_dedup|ddpo|pgraft\d+",
            seed=r"\d+",
        conda:
            "../envs/graftbench.yaml"
        threads: 1
        resources:
            gpu=SUITE.finetune_gpus(),
        params:
            graftbench=SUITE.finetune_command(PY),
            cfg=CONFIGS["molecule"],
            # the method's own section (pgraft's N_I list is swept in the wildcard)
            config_slice=lambda w: config_slice(
                "molecule",
                *MOL_EVAL,
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
            "OMP_NUM_THREADS={threads} {params.graftbench} finetune --task molecule"
            " --config {params.cfg:q} --model {input.model} --data $(dirname {input.data})"
            " --run {wildcards.run} --seed {wildcards.seed} --base-images {input.base}"
            " --device {params.device} --out $(dirname {output.metrics}) > {log} 2>&1"

    rule molecule_table:
        input:
            expand(
                f"{MOL}/{{run}}/seed{{seed}}/{{f}}",
                run=MOL_RUNS,
                seed=MOL_CFG.seeds,
                f=["metrics.json", "eval.json", "samples.tsv"],
            ),
            f"{MOL}/data/summary.json",
        output:
            table=report(
                f"{RESULTS}/tables/molecule.csv",
                caption="../report/molecule_table.rst",
                category="molecule",
                labels={"kind": "table"},
            ),
            md=f"{RESULTS}/tables/molecule.md",
            curve=report(
                f"{RESULTS}/figures/molecule_reward_vs_queries.png",
                caption="../report/molecule_reward_vs_queries.rst",
                category="molecule",
                labels={"kind": "reward vs queries"},
            ),
            ni=report(
                f"{RESULTS}/figures/molecule_pgraft_vs_ni.png",
                caption="../report/molecule_pgraft_vs_ni.rst",
                category="molecule",
                labels={"kind": "P-GRAFT vs N_I"},
            ),
            samples=report(
                f"{RESULTS}/figures/molecule_samples.png",
                caption="../report/molecule_samples.rst",
                category="molecule",
                labels={"kind": "samples"},
            ),
        log:
            f"{MOL}/logs/aggregate.log",
        conda:
            "../envs/graftbench.yaml"
        params:
            py=PY,
            profile=SUITE.profile,
            # the task folder: {MOL}/{run}/seed{n}/metrics.json -> {MOL}
            results=lambda w, input: str(Path(input[0]).parents[2]),
        shell:
            "{params.py} -m graftbench aggregate --task molecule --results {params.results}"
            " --profile {params.profile} --table {output.table} --figure {output.curve}"
            " --figure {output.ni} --figure {output.samples} > {log} 2>&1"
