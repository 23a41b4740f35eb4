# Reference generation: max(n_values) samples per train prompt from the reference model, in
# config["shards"]["generate"] jobs (scattergather) that are gathered into one table.


rule generate:
    input:
        prompts="results/prompts/{dataset}.parquet",
        model=reference_model_input(),
    output:
        samples="results/generate/{dataset}/shards/{scatteritem}.parquet",
    log:
        "logs/generate/{dataset}/{scatteritem}.log",
    benchmark:
        "benchmarks/generate/{dataset}/{scatteritem}.tsv"
    conda:
        SAMPLING_ENV
    threads: 2
    resources:
        mem_mb=4000,
        runtime=120,
        gpu=1,
    params:
        model=loaded_from("model", "base"),
        model_id=reference_id(),
        n=N_SAMPLES,
        generation=generation_settings(),
        shard=lambda wc: shard_of(wc.scatteritem),
        runtime=runtime(device=config["device"]),
        code=code("generate.py"),
    script:
        "../scripts/generate.py"


rule gather_samples:
    input:
        shards=gather.generate(
            "results/generate/{{dataset}}/shards/{scatteritem}.parquet"
        ),
    output:
        table="results/generate/{dataset}/samples.parquet",
    log:
        "logs/generate/{dataset}/gather.log",
    benchmark:
        "benchmarks/generate/{dataset}/gather.tsv"
    conda:
        "../../envs/tables.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        code=code("gather.py"),
    script:
        "../scripts/gather.py"
