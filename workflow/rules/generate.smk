# Reference generation: max(n_values) samples per train prompt from the reference model.


rule generate:
    input:
        prompts="results/prompts/{dataset}.parquet",
        model=reference_model_input(),
    output:
        samples="results/generate/{dataset}/samples.parquet",
    params:
        model=reference_model(),
        n=N_SAMPLES,
        generation=config["generation"],
        device=config["device"],
    log:
        "logs/generate/{dataset}.log",
    benchmark:
        "benchmarks/generate/{dataset}.tsv"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=120,
        gpu=1,
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/generate.py"
