# Plots for the report (snakemake --report results/report.html).


rule plot_frontier:
    input:
        summary=rules.summary.output.parquet,
        theory=rules.theory.output.table,
    output:
        png=report(
            "results/plots/frontier.png",
            caption="../report/frontier.rst",
            category="1. Frontier",
            labels={"figure": "win rate vs KL"},
        ),
        # what each artist draws, in data coordinates (bonbon.plots.drawn_series): checked against the tables
        series="results/plots/frontier.json",
    log:
        "logs/plots/frontier.log",
    benchmark:
        "benchmarks/plots/frontier.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        # the judge's win rates unless told otherwise (the same as the proxy's where the judge is the reward model)
        win_rate=config["evaluation"]["frontier_win_rate"],
        separate_judge=MODELS["judge"].location != MODELS["reward"].location,
        code=code("plot_frontier.py"),
    script:
        "../scripts/plot_frontier.py"


rule plot_distributions:
    input:
        tables=expand(rules.evaluate.output.table, policy=POLICIES.finals),
    output:
        rewards=report(
            "results/plots/rewards.png",
            caption="../report/rewards.rst",
            category="2. Evaluation",
            labels={"figure": "reward distributions"},
        ),
        rewards_series="results/plots/rewards.json",
        lengths=report(
            "results/plots/lengths.png",
            caption="../report/lengths.rst",
            category="2. Evaluation",
            labels={"figure": "length distributions"},
        ),
        lengths_series="results/plots/lengths.json",
    log:
        "logs/plots/distributions.log",
    benchmark:
        "benchmarks/plots/distributions.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        # drawn first and in grey: the policies that are the reference model (by kind, not by name)
        references=[
            p.name for p in POLICIES.finals.values() if p.kind == Kind.REFERENCE
        ],
        code=code("plot_distributions.py"),
    script:
        "../scripts/plot_distributions.py"


rule plot_judge:
    input:
        summary=rules.summary.output.parquet,
        theory=rules.theory.output.table,
    output:
        png=report(
            "results/plots/judge_vs_proxy.png",
            caption="../report/judge_vs_proxy.rst",
            category="1. Frontier",
            labels={"figure": "proxy vs judge win rate"},
        ),
        series="results/plots/judge_vs_proxy.json",
    log:
        "logs/plots/judge_vs_proxy.log",
    benchmark:
        "benchmarks/plots/judge_vs_proxy.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        code=code("plot_judge.py"),
    script:
        "../scripts/plot_judge.py"


rule plot_training:
    input:
        summaries=expand(rules.train.output.summary, run=RUNS),
    output:
        png=report(
            "results/plots/training.png",
            caption="../report/training.rst",
            category="4. Training",
            labels={"figure": "training curves"},
        ),
        series="results/plots/training.json",
    log:
        "logs/plots/training.log",
    benchmark:
        "benchmarks/plots/training.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        # the runs' names, losses, n and beta label the curves; their training settings and evaluated
        # checkpoints are not needed here
        runs=canonical(
            {
                run: {
                    k: v
                    for k, v in spec.items()
                    if k not in ("training", "checkpoints")
                }
                for run, spec in RUNS.items()
            }
        ),
        code=code("plot_training.py"),
    script:
        "../scripts/plot_training.py"
