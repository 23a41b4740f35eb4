# Reward scoring of every reference sample, shard by shard, gathered into one table.


rule score:
    input:
        samples="results/generate/{dataset}/shards/{scatteritem}.parquet",
        model=model_input("reward"),
    output:
        rewards="results/score/{dataset}/shards/{scatteritem}.parquet",
    log:
        "logs/score/{dataset}/{scatteritem}.log",
    benchmark:
        "benchmarks/score/{dataset}/{scatteritem}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=60,
        gpu=1,
    params:
        model=loaded_from("model", "reward"),
        model_id=model_id("reward"),
        runtime=runtime(
            device=config["device"], batch_size=config["scoring"]["batch_size"]
        ),
        code=code("score.py"),
    script:
        "../scripts/score.py"


rule gather_rewards:
    input:
        shards=gather.generate("results/score/{{dataset}}/shards/{scatteritem}.parquet"),
    output:
        table="results/score/{dataset}/rewards.parquet",
    log:
        "logs/score/{dataset}/gather.log",
    benchmark:
        "benchmarks/score/{dataset}/gather.tsv"
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
