# Best/worst pairs: for each n, the best and worst of the first n samples of every prompt, read from the
# scored blocks that hold them (a larger n added later leaves this file as it is).


rule pairs:
    input:
        rewards=lambda wc: shards(
            rules.score.output.rewards,
            "generate",
            dataset=wc.dataset,
            block=block_names(int(wc.n)),
        ),
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
