# Compositional text-to-image: pre-train the base -> evaluate it per seed -> fine-tune with
# each method per seed (then evaluate) -> table and figures.
if "t2i" in SUITE.tasks:
    T2I = f"{RESULTS}/t2i"
    T2I_CFG = resolve(config, "t2i")
    T2I_RUNS = T2I_CFG.runs()
    T2I_EVAL = (
        "scenes",
        "prompts",
        "finetune_prompts",
        "verifier",
        "scorer",
        "evaluate",
        "model.guidance_scale",
        "stable_diffusion",
    )

    rule t2i_pretrain:
        output:
            model=f"{T2I}/model.pt",
            curve=f"{T2I}/pretrain.jsonl",
        log:
            f"{T2I}/logs/pretrain.log",
        priority: 3
        conda:
            "../envs/graftbench.yaml"
        threads: 1
        params:
            py=PY,
            cfg=CONFIGS["t2i"],
            config_slice=config_slice(
                "t2i", "scenes", "model", "pretrain", "stable_diffusion"
            ),
            device=SUITE.device,
        shell:
            "OMP_NUM_THREADS={threads} {params.py} -m graftbench pretrain --task t2i"
            " --config {params.cfg:q} --out {output.model} --log {output.curve}"
            " --device {params.device} > {log} 2>&1"

    rule t2i_base:
        input:
            rules.t2i_pretrain.output.model,
        output:
            metrics=f"{T2I}/base/seed{{seed}}/metrics.json",
            evaluation=f"{T2I}/base/seed{{seed}}/eval.json",
            images=f"{T2I}/base/seed{{seed}}/images.npz",
        log:
            f"{T2I}/logs/base_seed{{seed}}.log",
        wildcard_constraints:
            seed=r"\d+",
        conda:
            "../envs/graftbench.yaml"
        threads: 1
        params:
            py=PY,
            cfg=CONFIGS["t2i"],
            config_slice=config_slice("t2i", *T2I_EVAL),
            device=SUITE.device,
        shell:
            "OMP_NUM_THREADS={threads} {params.py} -m graftbench evaluate-model --task t2i"
            " --config {params.cfg:q} --model {input} --seed {wildcards.seed}"
            " --device {params.device} --out $(dirname {output.metrics}) > {log} 2>&1"

    rule t2i_finetune:
        input:
            model=rules.t2i_pretrain.output.model,
            base=f"{T2I}/base/seed{{seed}}/images.npz",
        output:
            metrics=f"{T2I}/{{run}}/seed{{seed}}/metrics.json",
            evaluation=f"{T2I}/{{run}}/seed{{seed}}/eval.json",
            images=f"{T2I}/{{run}}/seed{{seed}}/images.npz",
            rounds=f"{T2I}/{{run}}/seed{{seed}}/rounds.jsonl",
            model=f"{T2I}/{{run}}/seed{{seed}}/model.pt",
        log:
            f"{T2I}/logs/{{run}}_seed{{seed}}.log",
        wildcard_constraints:
            run=r"graft|ddpo|pgraft\d+",
            seed=r"\d+",
        conda:
            "../envs/graftbench.yaml"
        threads: 1
        resources:
            gpu=SUITE.finetune_gpus(),
        params:
            graftbench=SUITE.finetune_command(PY),
            cfg=CONFIGS["t2i"],
            # the method's own section (pgraft's N_I list is swept in the wildcard, so it
            # is left out: adding an N_I reruns no existing job)
            config_slice=lambda w: config_slice(
                "t2i",
                *T2I_EVAL,
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
            "OMP_NUM_THREADS={threads} {params.graftbench} finetune --task t2i"
            " --config {params.cfg:q} --model {input.model} --run {wildcards.run}"
            " --seed {wildcards.seed} --base-images {input.base} --device {params.device}"
            " --out $(dirname {output.metrics}) > {log} 2>&1"

    rule t2i_table:
        input:
            expand(
                f"{T2I}/{{run}}/seed{{seed}}/{{f}}",
                run=T2I_RUNS,
                seed=T2I_CFG.seeds,
                f=["metrics.json", "eval.json"],
            ),
        output:
            table=report(
                f"{RESULTS}/tables/t2i.csv",
                caption="../report/t2i_table.rst",
                category="t2i",
                labels={"kind": "table"},
            ),
            md=f"{RESULTS}/tables/t2i.md",
            curve=report(
                f"{RESULTS}/figures/t2i_reward_vs_queries.png",
                caption="../report/t2i_reward_vs_queries.rst",
                category="t2i",
                labels={"kind": "reward vs queries"},
            ),
            ni=report(
                f"{RESULTS}/figures/t2i_pgraft_vs_ni.png",
                caption="../report/t2i_pgraft_vs_ni.rst",
                category="t2i",
                labels={"kind": "P-GRAFT vs N_I"},
            ),
            samples=report(
                f"{RESULTS}/figures/t2i_samples.png",
                caption="../report/t2i_samples.rst",
                category="t2i",
                labels={"kind": "samples"},
            ),
        log:
            f"{T2I}/logs/aggregate.log",
        conda:
            "../envs/graftbench.yaml"
        params:
            py=PY,
            profile=SUITE.profile,
            # the task folder: {T2I}/{run}/seed{n}/metrics.json -> {T2I}
            results=lambda w, input: str(Path(input[0]).parents[2]),
        shell:
            "{params.py} -m graftbench aggregate --task t2i --results {params.results}"
            " --profile {params.profile} --table {output.table} --figure {output.curve}"
            " --figure {output.ni} --figure {output.samples} > {log} 2>&1"
