# Prompts: any source -> one checked table with stable ids and train/eval splits.


rule prompts:
    input:
        source=prompt_source,
    output:
        prompts="results/prompts/{dataset}.parquet",
    params:
        dataset=lambda wc: canonical(config["datasets"][wc.dataset]),
        code=code("prompts.py"),
    log:
        "logs/prompts/{dataset}.log",
    benchmark:
        "benchmarks/prompts/{dataset}.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/tables.yaml"
    script:
        "../scripts/prompts.py"
