# Reward scoring of every reference sample, shard by shard, gathered into one table.


rule score:
    input:
        samples="results/generate/{dataset}/shards/{scatteritem}.parquet",
        model=model_input("reward"),
    output:
        rewards="results/score/{dataset}/shards/{scatteritem}.parquet",
    params:
        model=loaded_from("model", "reward"),
        model_id=model_id("reward"),
        code=code("score.py"),
        runtime=runtime(device=config["device"], batch_size=config["scoring"]["batch_size"]),
    log:
        "logs/score/{dataset}/{scatteritem}.log",
    benchmark:
        "benchmarks/score/{dataset}/{scatteritem}.tsv"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=60,
        gpu=1,
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/score.py"


rule gather_rewards:
    input:
        shards=gather.generate("results/score/{{dataset}}/shards/{scatteritem}.parquet"),
    output:
        table="results/score/{dataset}/rewards.parquet",
    params:
        code=code("gather.py"),
    log:
        "logs/score/{dataset}/gather.log",
    benchmark:
        "benchmarks/score/{dataset}/gather.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/tables.yaml"
    script:
        "../scripts/gather.py"
