# Prompts: any source -> one checked table with stable ids and train/eval splits.


rule prompts:
    input:
        source=prompt_source,
        tokenizer=MODELS["tokenizer"].files,
    output:
        prompts="results/prompts/{dataset}.parquet",
    log:
        "logs/prompts/{dataset}.log",
    benchmark:
        "benchmarks/prompts/{dataset}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        dataset=lambda wc: canonical(config["datasets"][wc.dataset]),
        # a policy with a chat template gets its prompts rendered here (bonbon.chat)
        tokenizer=loaded_from("tokenizer", MODELS["tokenizer"]),
        tokenizer_id=MODELS["tokenizer"].id,
        max_prompt_length=config["generation"]["max_prompt_length"],
        system_prompt=config["chat"]["system_prompt"],
        code=code("prompts.py"),
    script:
        "../scripts/prompts.py"
