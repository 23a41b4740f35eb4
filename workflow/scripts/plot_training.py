"""The training curves of every alignment run, from their metrics.csv."""

from pathlib import Path

import pandas as pd

from bonbon import plots
from bonbon.jobs import setup_job

snakemake = globals()["snakemake"]
log, _ = setup_job(snakemake)
runs = snakemake.params.runs
metrics = {run: pd.read_csv(Path(summary).with_name("metrics.csv"))
           for run, summary in zip(runs, snakemake.input.summaries, strict=True)}
plots.plot_training_curves(metrics, snakemake.output.png, runs=runs)
log.info("wrote %s", snakemake.output.png)
