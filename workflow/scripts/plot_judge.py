"""Proxy against judge: every final policy's win rate by the training reward and by the judge, at its KL."""

from bonbon.warm import hand_over

hand_over(globals())  # the job runs in a warm worker (imports done) where one is up: bonbon.warm

from bonbon import plots
from bonbon.jobs import setup_job
from bonbon.tables import read_table

snakemake = globals()["snakemake"]
log, _ = setup_job(snakemake)
summary = read_table(snakemake.input.summary, ["policy", "kind", "kl", "win_rate", "judge_win_rate"])
fig = plots.plot_judge_vs_proxy(summary, read_table(snakemake.input.theory, ["n", "win_rate", "kl"]),
                                snakemake.output.png)
plots.write_series(fig, snakemake.output.series)
log.info("wrote %s and %s", snakemake.output.png, snakemake.output.series)
