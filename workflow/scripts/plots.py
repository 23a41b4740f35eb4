"""The report's figures, by rule."""

from pathlib import Path

import pandas as pd

from bonbon import plots
from bonbon.frontier import judge_view
from bonbon.io import setup_job_logging

snakemake = globals()["snakemake"]
log = setup_job_logging(snakemake.log[0])
if snakemake.rule == "plot_frontier":
    summary = pd.read_parquet(snakemake.input.summary)
    if snakemake.params.win_rate == "judge":
        plots.plot_frontier(judge_view(summary), pd.read_parquet(snakemake.input.theory), snakemake.output.png,
                            win_label=plots.JUDGE_LABEL)
    else:
        plots.plot_frontier(summary, pd.read_parquet(snakemake.input.theory), snakemake.output.png)
elif snakemake.rule == "plot_judge":
    plots.plot_judge_vs_proxy(pd.read_parquet(snakemake.input.summary), pd.read_parquet(snakemake.input.theory),
                              snakemake.output.png)
elif snakemake.rule == "plot_distributions":
    tables = {Path(p).stem: pd.read_parquet(p) for p in snakemake.input.tables}
    plots.plot_reward_distributions(tables, snakemake.output.rewards)
    plots.plot_length_distributions(tables, snakemake.output.lengths)
else:
    runs = snakemake.params.runs
    metrics = {run: pd.read_csv(Path(summary).with_name("metrics.csv")) for run, summary in zip(runs, snakemake.input.summaries, strict=True)}
    plots.plot_training_curves(metrics, snakemake.output.png, runs=runs)
log.info("wrote %s", ", ".join(snakemake.output))
