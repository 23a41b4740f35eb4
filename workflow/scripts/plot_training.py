"""The training curves of every alignment run, from their metrics.csv."""

from bonbon.warm import hand_over

hand_over(globals())  # the job runs in a warm worker (imports done) where one is up: bonbon.warm

from pathlib import Path

import pandas as pd

from bonbon import plots
from bonbon.jobs import setup_job

snakemake = globals()["snakemake"]
log, _ = setup_job(snakemake)
runs = snakemake.params.runs
# paired by name: each summary lies in its run's directory, results/models/{run}/train_summary.json
# (never by position: params.runs is sorted, the inputs are in config order)
metrics = {Path(summary).parent.name: pd.read_csv(Path(summary).with_name("metrics.csv"))
           for summary in snakemake.input.summaries}
if set(metrics) != set(runs):
    raise ValueError(f"training summaries {sorted(metrics)} do not name the runs {sorted(runs)}")
fig = plots.plot_training_curves(metrics, snakemake.output.png, runs=runs)
plots.write_series(fig, snakemake.output.series)
log.info("wrote %s and %s", snakemake.output.png, snakemake.output.series)
