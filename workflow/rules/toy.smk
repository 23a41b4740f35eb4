# The toy world: corpus, tokenizers, base model and reward model, built offline from a seed.


rule toy_corpus:
    output:
        corpus="results/toy/corpus.parquet",
        prompts="results/toy/prompts.parquet",
    params:
        toy=canonical({k: config["toy"][k] for k in ("seed", "n_dialogues", "n_prompts", "eval_fraction")}),
        code=code("toy_corpus.py"),
    log:
        "logs/toy/corpus.log",
    benchmark:
        "benchmarks/toy/corpus.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/toy_corpus.py"


rule toy_tokenizers:
    input:
        corpus="results/toy/corpus.parquet",
    output:
        policy=["results/toy/tokenizer_policy/tokenizer.json", "results/toy/tokenizer_policy/tokenizer_config.json"],
        reward=["results/toy/tokenizer_reward/tokenizer.json", "results/toy/tokenizer_reward/tokenizer_config.json"],
    params:
        toy=canonical({"vocab_size": config["toy"]["vocab_size"],
                       "reward_model": {"max_length": config["toy"]["reward_model"]["max_length"]}}),
        code=code("toy_tokenizers.py"),
    log:
        "logs/toy/tokenizers.log",
    benchmark:
        "benchmarks/toy/tokenizers.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/toy_tokenizers.py"


rule toy_base_model:
    input:
        corpus="results/toy/corpus.parquet",
        tokenizer=["results/toy/tokenizer_policy/tokenizer.json", "results/toy/tokenizer_policy/tokenizer_config.json"],
    output:
        model=model_files("results/toy/base_model"),
        summary="results/toy/base_model/toy_summary.json",
    params:
        toy=canonical({k: config["toy"][k] for k in ("seed", "base_model")}),
        code=code("toy_model.py"),
    log:
        "logs/toy/base_model.log",
    benchmark:
        "benchmarks/toy/base_model.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/toy_model.py"


rule toy_reward_model:
    input:
        corpus="results/toy/corpus.parquet",
        tokenizer=["results/toy/tokenizer_reward/tokenizer.json", "results/toy/tokenizer_reward/tokenizer_config.json"],
    output:
        model=model_files("results/toy/reward_model"),
        summary="results/toy/reward_model/toy_summary.json",
    params:
        toy=canonical({k: config["toy"][k] for k in ("seed", "reward_model")}),
        code=code("toy_model.py"),
    log:
        "logs/toy/reward_model.log",
    benchmark:
        "benchmarks/toy/reward_model.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/toy_model.py"
