# Sampling from every policy on the eval prompts, best-of-n baselines, win rate and KL, the theory.


rule sample:
    input:
        prompts=lambda wc: "results/prompts/{}.parquet".format(POLICIES[wc.policy]["dataset"]),
        policy=policy_model_input,
        reference=reference_model_input(),
        reward=model_input("reward"),
    output:
        samples="results/samples/{policy}/shards/{scatteritem}.parquet",
    params:
        shard=lambda wc: shard_of(wc.scatteritem),
        policy=loaded_from("policy", "base"),
        reference=loaded_from("reference", "base"),
        reward=loaded_from("reward", "reward"),
        model_ids=lambda wc: canonical({"policy": reference_id() if POLICIES[wc.policy]["kind"] == "reference"
                                        else wc.policy, "reference": reference_id(), "reward": model_id("reward")}),
        is_reference=lambda wc: POLICIES[wc.policy]["kind"] == "reference",
        n=lambda wc: config["evaluation"]["samples_per_prompt"] * (
            1 + N_SAMPLES if POLICIES[wc.policy]["kind"] == "reference" else 1
        ),
        generation=generation_settings(),
        max_prompts=config["evaluation"]["max_prompts"],
        name=lambda wc: wc.policy,
        code=code("sample.py"),
        runtime=runtime(device=config["device"], batch_size=config["evaluation"]["batch_size"]),
    log:
        "logs/sample/{policy}/{scatteritem}.log",
    benchmark:
        "benchmarks/sample/{policy}/{scatteritem}.tsv"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=120,
        gpu=1,
    conda:
        SAMPLING_ENV
    script:
        "../scripts/sample.py"


rule gather_policy_samples:
    input:
        shards=gather.sample("results/samples/{{policy}}/shards/{scatteritem}.parquet"),
    output:
        table="results/samples/{policy}.parquet",
    params:
        code=code("gather.py"),
    log:
        "logs/sample/{policy}/gather.log",
    benchmark:
        "benchmarks/sample/{policy}/gather.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/tables.yaml"
    script:
        "../scripts/gather.py"


rule evaluate:
    input:
        samples=policy_samples,
        reference=lambda wc: "results/samples/{}-reference.parquet".format(POLICIES[wc.policy]["dataset"]),
    output:
        table="results/eval/{policy}.parquet",
    params:
        policy=lambda wc: {"name": wc.policy, **POLICIES[wc.policy]},
        k=config["evaluation"]["samples_per_prompt"],
        n_max=N_SAMPLES,
        code=code("evaluate.py"),
    log:
        "logs/evaluate/{policy}.log",
    benchmark:
        "benchmarks/evaluate/{policy}.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/evaluate.py"


rule summary:
    input:
        tables=expand("results/eval/{policy}.parquet", policy=POLICIES),
    output:
        parquet="results/eval/summary.parquet",
        csv="results/eval/summary.csv",
        html=report(
            "results/eval/summary.html",
            caption="../report/summary.rst",
            category="2. Evaluation",
            labels={"table": "summary"},
        ),
    params:
        policies=POLICIES,
        sampling={k: config["generation"][k] for k in ("temperature", "top_k", "top_p")},
        code=code("summary.py"),
    log:
        "logs/evaluate/summary.log",
    benchmark:
        "benchmarks/evaluate/summary.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/torch.yaml"
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
    params:
        n_max=config["evaluation"]["theory_n_max"],
        code=code("theory.py"),
    log:
        "logs/evaluate/theory.log",
    benchmark:
        "benchmarks/evaluate/theory.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        "../../envs/tables.yaml"
    script:
        "../scripts/theory.py"
