# Reward scoring of every reference sample, block by block and shard by shard (as generated); pairs read
# the blocks they need, rewards.parquet gathers them all.


rule score:
    input:
        samples=rules.generate.output.samples,
        model=MODELS["reward"].files,
    output:
        rewards="results/score/{dataset}/shards/samples{block}/{scatteritem}.parquet",
    log:
        "logs/score/{dataset}/samples{block}/{scatteritem}.log",
    benchmark:
        "benchmarks/score/{dataset}/samples{block}/{scatteritem}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=60,
        gpu=1,
    params:
        model=loaded_from("model", MODELS["reward"]),
        model_id=MODELS["reward"].id,
        runtime=runtime(
            device=config["device"], batch_size=config["scoring"]["batch_size"]
        ),
        code=code("score.py"),
    script:
        "../scripts/score.py"


# the rewards of every block and shard in one table, as rule gather_samples does (generate.smk)
use rule gather_samples as gather_rewards with:
    input:
        shards=shards(rules.score.output.rewards, "generate", block=BLOCKS),
    output:
        table="results/score/{dataset}/rewards.parquet",
    log:
        "logs/score/{dataset}/gather.log",
    benchmark:
        "benchmarks/score/{dataset}/gather.tsv"
