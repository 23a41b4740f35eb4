# The ecosystem's formats: pairs as TRL preference datasets (export.pairs puts them in `all`; any one can
# be asked for by name) and model cards for every trained model and evaluated snapshot (export.model_cards).
rule export_pairs:
    input:
        pairs=lambda wc: pair_file(wc.dataset, wc.pairs),
        ref_logps=rules.gather_ref_logps.output.ref_logps,
        prompts=rules.prompts.output.prompts,
    output:
        # save_to_disk's folder (load_from_disk), and files load_dataset("parquet" | "json") opens
        folder=directory("results/export/{dataset}/{pairs}"),
        parquet="results/export/{dataset}/{pairs}.parquet",
        jsonl="results/export/{dataset}/{pairs}.jsonl",
    log:
        "logs/export/{dataset}/{pairs}.log",
    benchmark:
        "benchmarks/export/{dataset}/{pairs}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        code=code("export_pairs.py"),
    script:
        "../scripts/export_pairs.py"


rule model_cards:
    input:
        summary=rules.summary.output.parquet,
        models=lambda wc: [
            model_files(card["directory"])[0] for card in card_specs().values()
        ],
    output:
        index="results/cards/cards.json",
    log:
        "logs/cards/cards.log",
    benchmark:
        "benchmarks/cards/cards.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        cards=lambda wc: canonical(card_specs()),
        base_model=MODELS["base"].id,
        datasets=canonical(config["datasets"]),
        sampling=canonical(
            {
                k: config["generation"][k]
                for k in ("temperature", "top_k", "top_p", "max_new_tokens")
            }
        ),
        # the config and the command as the main process was started, for the card's text only: a
        # function of threads (runtime), which Snakemake leaves out of its params comparison, so a
        # setting that changes no result, or another command line, does not rewrite the cards
        provenance=lambda wc, threads: {
            "config": canonical(config),
            "command": shlex.join(["snakemake", *sys.argv[1:]]),
        },
        code=code("model_cards.py"),
    script:
        "../scripts/model_cards.py"
