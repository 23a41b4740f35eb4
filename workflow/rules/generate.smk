# Reference generation: samples 0 ... max(n_values)-1 of every train prompt from the reference model, in
# blocks of sample indices (BLOCKS: [0, 2), [2, 4), [4, 8), ...) of config["shards"]["generate"] jobs each
# (scattergather); later stages read the blocks they need, and samples.parquet gathers them all.


rule generate:
    input:
        prompts=rules.prompts.output.prompts,
        model=MODELS["reference"].files,
    output:
        samples="results/generate/{dataset}/shards/samples{block}/{scatteritem}.parquet",
    log:
        "logs/generate/{dataset}/samples{block}/{scatteritem}.log",
    benchmark:
        "benchmarks/generate/{dataset}/samples{block}/{scatteritem}.tsv"
    conda:
        SAMPLING_ENV
    threads: 2
    resources:
        mem_mb=4000,
        runtime=120,
        gpu=1,
    params:
        model=loaded_from("model", MODELS["reference"]),
        model_id=MODELS["reference"].id,
        samples=lambda wc: block_range(wc.block),
        generation=generation_settings(),
        shard=lambda wc: shard_of(wc.scatteritem),
        runtime=runtime(device=config["device"]),
        code=code("generate.py"),
    script:
        "../scripts/generate.py"


# The samples of every block and shard in one table. The gathers of the other stages are this rule,
# reused with `use rule gather_samples as ... with:` (gather_rewards in score.smk, gather_policy_samples
# in evaluate.smk) with their own shards, table, log and benchmark; the script, conda env, resources and
# params are this rule's.
rule gather_samples:
    input:
        shards=shards(rules.generate.output.samples, "generate", block=BLOCKS),
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
