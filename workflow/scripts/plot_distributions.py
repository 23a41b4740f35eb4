"""The reward and length distributions of every evaluated policy."""

from pathlib import Path

from bonbon import plots
from bonbon.jobs import setup_job
from bonbon.tables import read_table

snakemake = globals()["snakemake"]
log, _ = setup_job(snakemake)
tables = {Path(p).stem: read_table(p, ["reward", "n_tokens", "finished"]) for p in snakemake.input.tables}
plots.plot_reward_distributions(tables, snakemake.output.rewards)
plots.plot_length_distributions(tables, snakemake.output.lengths)
log.info("wrote %s and %s", snakemake.output.rewards, snakemake.output.lengths)
