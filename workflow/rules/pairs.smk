# Best/worst pairs: for each n, the best and worst of the first n samples of every prompt.


rule pairs:
    input:
        rewards="results/score/{dataset}/rewards.parquet",
    output:
        pairs="results/pairs/{dataset}/n{n}.parquet",
    log:
        "logs/pairs/{dataset}/n{n}.log",
    benchmark:
        "benchmarks/pairs/{dataset}/n{n}.tsv"
    conda:
        "../../envs/tables.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        n=lambda wc: int(wc.n),
        code=code("pairs.py"),
    script:
        "../scripts/pairs.py"
