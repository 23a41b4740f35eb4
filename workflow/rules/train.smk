# SFT (the reference model), reference log-probs once per pair file, and the alignment runs.


rule sft:
    input:
        model=MODELS["base"].files,
        data=sft_input(),
    output:
        # the model's files and the summary (written last), not the directory: see MODEL_FILES
        model=model_files(SFT_MODEL),
        summary=os.path.join(SFT_MODEL, "train_summary.json"),
    log:
        "logs/train/sft.log",
    benchmark:
        "benchmarks/train/sft.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=240,
        gpu=1,
    params:
        base=loaded_from("model", MODELS["base"]),
        base_id=MODELS["base"].id,
        data=config["sft"]["data"],
        system_prompt=config["chat"]["system_prompt"],
        dataset=canonical(config["datasets"].get(config["sft"]["data"])),
        out=lambda wildcards, output: os.path.dirname(output.summary),
        training=result_training(config["sft"]["training"]),
        runtime=runtime(training=runtime_training(config["sft"]["training"])),
        code=code("sft.py"),
    script:
        "../scripts/sft.py"


rule original_pairs:
    input:
        source=prompt_source,
        tokenizer=trl_tokenizer_input,
    output:
        pairs="results/original_pairs/{dataset}.parquet",
    log:
        "logs/original_pairs/{dataset}.log",
    benchmark:
        "benchmarks/original_pairs/{dataset}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        dataset=lambda wc: canonical(config["datasets"][wc.dataset]),
        # derived params (they take input), left out of the rerun check: where to load the tokenizer from,
        # and the limit that only checks the pairs (a changed tokenizer is a changed input)
        tokenizer=loaded_from("tokenizer", MODELS["tokenizer"]),
        max_prompt_length=lambda wc, input: config["training"]["max_prompt_length"],
        code=code("original_pairs.py"),
    script:
        "../scripts/original_pairs.py"


rule ref_logps:
    input:
        pairs=lambda wc: pair_file(wc.dataset, wc.pairs),
        model=MODELS["reference"].files,
    output:
        ref_logps="results/ref_logps/{dataset}/{pairs}/shards/{scatteritem}.parquet",
    log:
        "logs/ref_logps/{dataset}/{pairs}/{scatteritem}.log",
    benchmark:
        "benchmarks/ref_logps/{dataset}/{pairs}/{scatteritem}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=60,
        gpu=1,
    params:
        shard=lambda wc: shard_of(wc.scatteritem),
        model=loaded_from("model", MODELS["reference"]),
        model_id=MODELS["reference"].id,
        max_length=config["training"]["max_length"],
        max_prompt_length=config["training"]["max_prompt_length"],
        runtime=runtime(
            device=config["device"], batch_size=config["scoring"]["batch_size"]
        ),
        code=code("ref_logps.py"),
    script:
        "../scripts/ref_logps.py"


rule gather_ref_logps:
    input:
        shards=shards(rules.ref_logps.output.ref_logps, "ref_logps"),
    output:
        ref_logps="results/ref_logps/{dataset}/{pairs}.parquet",
    log:
        "logs/ref_logps/{dataset}/{pairs}/gather.log",
    benchmark:
        "benchmarks/ref_logps/{dataset}/{pairs}/gather.tsv"
    conda:
        "../../envs/tables.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        code=code("gather_ref_logps.py"),
    script:
        "../scripts/gather_ref_logps.py"


# a checkpoint: how many steps a run took, and so which of its snapshots are evaluated, is known only
# once it has trained (evaluated_policies in common.smk)
checkpoint train:
    input:
        pairs=lambda wc: pair_file(RUNS[wc.run]["dataset"], RUNS[wc.run]["pairs"]),
        ref_logps=lambda wc: fill(
            rules.gather_ref_logps.output.ref_logps,
            dataset=RUNS[wc.run]["dataset"],
            pairs=RUNS[wc.run]["pairs"],
        ),
        model=MODELS["reference"].files,
    output:
        # the model's files and the summary, not the directory: Snakemake deletes a failed job's outputs,
        # and the run's checkpoints in the directory must survive a kill so that a rerun resumes from them
        model=model_files("results/models/{run}"),
        summary="results/models/{run}/train_summary.json",
    log:
        "logs/train/{run}.log",
    benchmark:
        "benchmarks/train/{run}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=480,
        gpu=1,
    params:
        model=loaded_from("model", MODELS["reference"]),
        model_id=MODELS["reference"].id,
        out=lambda wildcards, output: os.path.dirname(output.summary),
        # the run's result-affecting settings only: not its evaluated checkpoints (evaluation.checkpoints,
        # runs[].checkpoints), which decide what is sampled after training, nor the keys of RUNTIME_KEYS
        training=lambda wc: result_training(RUNS[wc.run]["training"]),
        runtime=lambda wildcards, threads: {
            "training": runtime_training(RUNS[wildcards.run]["training"]),
            "accelerate": config["accelerate"]["config_file"],
        },
        code=code("train.py"),
    script:
        "../scripts/train.py"
