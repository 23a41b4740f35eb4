# The toy world: corpus, tokenizers, base model and reward model, built offline from a seed.


rule toy_corpus:
    output:
        corpus="results/toy/corpus.parquet",
        prompts="results/toy/prompts.parquet",
    log:
        "logs/toy/corpus.log",
    benchmark:
        "benchmarks/toy/corpus.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        toy=canonical(
            {
                k: config["toy"][k]
                for k in (
                    "seed",
                    "n_dialogues",
                    "n_prompts",
                    "eval_fraction",
                    "filler",
                )
            }
        ),
        code=code("toy_corpus.py"),
    script:
        "../scripts/toy_corpus.py"


rule toy_tokenizers:
    input:
        corpus=rules.toy_corpus.output.corpus,
    output:
        # where bonbon.model_refs reads the toy tokenizers (the policy's is models.tokenizer's files)
        policy=[os.path.join(TOY_TOKENIZERS["policy"], f) for f in TOY_TOKENIZER_FILES],
        reward=[os.path.join(TOY_TOKENIZERS["reward"], f) for f in TOY_TOKENIZER_FILES],
    log:
        "logs/toy/tokenizers.log",
    benchmark:
        "benchmarks/toy/tokenizers.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        toy=canonical(
            {
                "vocab_size": config["toy"]["vocab_size"],
                "chat": config["toy"]["chat"],
                "reward_model": {
                    "max_length": config["toy"]["reward_model"]["max_length"]
                },
            }
        ),
        code=code("toy_tokenizers.py"),
    script:
        "../scripts/toy_tokenizers.py"


rule toy_base_model:
    input:
        corpus=rules.toy_corpus.output.corpus,
        tokenizer=rules.toy_tokenizers.output.policy,
    output:
        # the model's files, not the directory: see MODEL_FILES
        model=model_files(TOY_MODELS["base"]),
        summary=os.path.join(TOY_MODELS["base"], "toy_summary.json"),
    log:
        "logs/toy/base_model.log",
    benchmark:
        "benchmarks/toy/base_model.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        toy=canonical({k: config["toy"][k] for k in ("seed", "base_model")}),
        code=code("toy_base_model.py"),
    script:
        "../scripts/toy_base_model.py"


rule toy_reward_model:
    input:
        corpus=rules.toy_corpus.output.corpus,
        tokenizer=rules.toy_tokenizers.output.reward,
    output:
        # the model's files, not the directory: see MODEL_FILES
        model=model_files(TOY_MODELS["reward"]),
        summary=os.path.join(TOY_MODELS["reward"], "toy_summary.json"),
    log:
        "logs/toy/reward_model.log",
    benchmark:
        "benchmarks/toy/reward_model.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        toy=canonical({k: config["toy"][k] for k in ("seed", "reward_model")}),
        code=code("toy_reward_model.py"),
    script:
        "../scripts/toy_reward_model.py"


# The judge: a second reward model, trained on its own held-out corpus from its own seed, on the gold
# labels that penalise the filler the proxy's labels reward (toy.filler, bonbon.toy).
# It needs only the reward tokenizer, so it trains beside the base and reward models, not after them.
rule toy_judge_model:
    input:
        tokenizer=rules.toy_tokenizers.output.reward,
    output:
        # the model's files, not the directory: see MODEL_FILES
        model=model_files(TOY_MODELS["judge"]),
        summary=os.path.join(TOY_MODELS["judge"], "toy_summary.json"),
        corpus="results/toy/judge_corpus.parquet",
    log:
        "logs/toy/judge_model.log",
    benchmark:
        "benchmarks/toy/judge_model.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        toy=canonical({k: config["toy"][k] for k in ("seed", "judge_model", "filler")}),
        code=code("toy_judge_model.py"),
    script:
        "../scripts/toy_judge_model.py"
