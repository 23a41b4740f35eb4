# Plots for the report (snakemake --report results/report.html).


rule plot_frontier:
    input:
        summary="results/eval/summary.parquet",
        theory="results/eval/theory.parquet",
    output:
        png=report(
            "results/plots/frontier.png",
            caption="../report/frontier.rst",
            category="1. Frontier",
            labels={"figure": "win rate vs KL"},
        ),
    params:
        code=code("plots.py"),
    log:
        "logs/plots/frontier.log",
    benchmark:
        "benchmarks/plots/frontier.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/plots.py"


rule plot_distributions:
    input:
        tables=expand("results/eval/{policy}.parquet", policy=POLICIES),
    output:
        rewards=report(
            "results/plots/rewards.png",
            caption="../report/rewards.rst",
            category="2. Evaluation",
            labels={"figure": "reward distributions"},
        ),
        lengths=report(
            "results/plots/lengths.png",
            caption="../report/lengths.rst",
            category="2. Evaluation",
            labels={"figure": "length distributions"},
        ),
    params:
        code=code("plots.py"),
    log:
        "logs/plots/distributions.log",
    benchmark:
        "benchmarks/plots/distributions.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/plots.py"


rule plot_training:
    input:
        summaries=expand("results/models/{run}/train_summary.json", run=RUNS),
    output:
        png=report(
            "results/plots/training.png",
            caption="../report/training.rst",
            category="4. Training",
            labels={"figure": "training curves"},
        ),
    params:
        # the runs' names and losses label the curves; their training settings are not needed here
        runs=canonical({run: {k: v for k, v in spec.items() if k != "training"} for run, spec in RUNS.items()}),
        code=code("plots.py"),
    log:
        "logs/plots/training.log",
    benchmark:
        "benchmarks/plots/training.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/plots.py"
