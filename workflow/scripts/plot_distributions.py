"""The reward and length distributions of every final policy (the reference, best-of-n, each run's
final model)."""

from bonbon.warm import hand_over

hand_over(globals())  # the job runs in a warm worker (imports done) where one is up: bonbon.warm

from pathlib import Path

from bonbon import plots
from bonbon.jobs import setup_job
from bonbon.tables import read_table

snakemake = globals()["snakemake"]
log, _ = setup_job(snakemake)
tables = {Path(p).stem: read_table(p, ["reward", "n_tokens", "finished"]) for p in snakemake.input.tables}
out, references = snakemake.output, snakemake.params.references
plots.write_series(plots.plot_reward_distributions(tables, out.rewards, references), out.rewards_series)
plots.write_series(plots.plot_length_distributions(tables, out.lengths, references), out.lengths_series)
log.info("wrote %s and %s (and their drawn series)", out.rewards, out.lengths)
