# Reward scoring of every reference sample.


rule score:
    input:
        samples="results/generate/{dataset}/samples.parquet",
        model=model_input("reward"),
    output:
        rewards="results/score/{dataset}/rewards.parquet",
    params:
        model=model_dir("reward"),
        batch_size=config["scoring"]["batch_size"],
        device=config["device"],
    log:
        "logs/score/{dataset}.log",
    benchmark:
        "benchmarks/score/{dataset}.tsv"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=60,
        gpu=1,
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/score.py"
