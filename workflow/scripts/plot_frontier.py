"""The frontier figure: win rate vs KL (and vs length) of every policy, with the best-of-n theory."""

from bonbon import plots
from bonbon.jobs import setup_job
from bonbon.tables import read_table

snakemake = globals()["snakemake"]
log, _ = setup_job(snakemake)
summary = read_table(snakemake.input.summary, ["policy", "kind", "win_rate", "kl"])
plots.plot_frontier(summary, read_table(snakemake.input.theory, ["n", "win_rate", "kl"]), snakemake.output.png)
log.info("wrote %s", snakemake.output.png)
