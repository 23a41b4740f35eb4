# Sampling from every policy on the eval prompts (and best-of-n's candidates and the opponents from the
# reference, in blocks), best-of-n baselines, win rate against the opponents and KL, the theory.


rule sample:
    input:
        prompts=lambda wc: fill(
            rules.prompts.output.prompts, dataset=policy_spec(wc.policy).dataset
        ),
        policy=policy_model_input,
        run=policy_run_input,
        reference=MODELS["reference"].files,
        reward=MODELS["reward"].files,
        judge=MODELS["judge"].files,
    output:
        samples=os.path.join(SAMPLES_DIR, "{policy}", "shards", "{scatteritem}.parquet"),
    log:
        "logs/sample/{policy}/{scatteritem}.log",
    benchmark:
        "benchmarks/sample/{policy}/{scatteritem}.tsv"
    conda:
        SAMPLING_ENV
    threads: 1
    resources:
        mem_mb=8000,
        runtime=120,
        gpu=1,
    params:
        shard=lambda wc: shard_of(wc.scatteritem),
        policy=loaded_from("policy", MODELS["reference"]),
        reference=loaded_from("reference", MODELS["reference"]),
        reward=loaded_from("reward", MODELS["reward"]),
        judge=loaded_from("judge", MODELS["judge"]),
        # the models as settings (a hub id, or a directory whose files are inputs too)
        model_ids=lambda wc: canonical(
            {
                "policy": (
                    MODELS["reference"].id
                    if policy_spec(wc.policy).samples_from_reference
                    else wc.policy
                ),
                "reference": MODELS["reference"].id,
                "reward": MODELS["reward"].id,
                "judge": MODELS["judge"].id,
            }
        ),
        is_reference=lambda wc: policy_spec(wc.policy).samples_from_reference,
        samples=lambda wc: policy_spec(wc.policy).sample_range(
            config["evaluation"]["samples_per_prompt"]
        ),
        stream=lambda wc: policy_spec(wc.policy).stream,
        generation=generation_settings(),
        max_prompts=config["evaluation"]["max_prompts"],
        name=lambda wc: wc.policy,
        code=code("sample.py"),
        runtime=runtime(
            device=config["device"], batch_size=config["evaluation"]["batch_size"]
        ),
    script:
        "../scripts/sample.py"


# a policy's shards in one table, as rule gather_samples does (generate.smk), where bonbon.policies
# (Policy.sample_files) reads them
use rule gather_samples as gather_policy_samples with:
    input:
        shards=shards(rules.sample.output.samples, "sample"),
    output:
        table=samples_path("{policy}"),
    log:
        "logs/sample/{policy}/gather.log",
    benchmark:
        "benchmarks/sample/{policy}/gather.tsv"


rule evaluate:
    input:
        samples=lambda wc: policy_spec(wc.policy).sample_files(),
        opponents=opponent_samples,
    output:
        table="results/eval/{policy}.parquet",
    log:
        "logs/evaluate/{policy}.log",
    benchmark:
        "benchmarks/evaluate/{policy}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        policy=lambda wc: canonical(
            {"name": wc.policy, **policy_spec(wc.policy).spec()}
        ),
        k=config["evaluation"]["samples_per_prompt"],
        opponents=config["evaluation"]["opponents"],
        code=code("evaluate.py"),
    script:
        "../scripts/evaluate.py"


rule summary:
    input:
        tables=lambda wc: expand(
            rules.evaluate.output.table, policy=evaluated_policies()
        ),
    output:
        parquet="results/eval/summary.parquet",
        csv="results/eval/summary.csv",
        html=report(
            "results/eval/summary.html",
            caption="../report/summary.rst",
            category="2. Evaluation",
            labels={"table": "summary"},
        ),
        runs=report(
            "results/eval/runs.html",
            caption="../report/runs.rst",
            category="1. Frontier",
            labels={"table": "distance to best-of-n per run"},
        ),
        runs_parquet="results/eval/runs.parquet",
        seeds=report(
            "results/eval/seeds.html",
            caption="../report/seeds.rst",
            category="2. Evaluation",
            labels={"table": "mean over seeds"},
        ),
        seeds_parquet="results/eval/seeds.parquet",
    log:
        "logs/evaluate/summary.log",
    benchmark:
        "benchmarks/evaluate/summary.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        policies=lambda wc: canonical(summary_specs(wc)),
        # which runs are seeds of one grid point (training.seed a list)
        replicates=canonical(replicates(RUNS)),
        sampling=canonical(
            {k: config["generation"][k] for k in ("temperature", "top_k", "top_p")}
        ),
        code=code("summary.py"),
    script:
        "../scripts/summary.py"


rule theory:
    output:
        table="results/eval/theory.parquet",
        html=report(
            "results/eval/theory.html",
            caption="../report/theory.rst",
            category="3. Best-of-n theory",
            labels={"table": "theory"},
        ),
    log:
        "logs/evaluate/theory.log",
    benchmark:
        "benchmarks/evaluate/theory.tsv"
    conda:
        "../../envs/tables.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        n_max=config["evaluation"]["theory_n_max"],
        code=code("theory.py"),
    script:
        "../scripts/theory.py"
