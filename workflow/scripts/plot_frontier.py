"""The frontier figure: win rate vs KL (and vs length) of every policy, with the best-of-n theory; the
judge's win rates (evaluation.frontier_win_rate: judge) or the proxy's."""

from bonbon import plots
from bonbon.frontier import judge_view
from bonbon.jobs import setup_job
from bonbon.tables import read_table

snakemake = globals()["snakemake"]
log, _ = setup_job(snakemake)
summary = read_table(snakemake.input.summary, ["policy", "kind", "win_rate", "kl"])
theory = read_table(snakemake.input.theory, ["n", "win_rate", "kl"])
if snakemake.params.win_rate == "judge":
    plots.plot_frontier(judge_view(summary), theory, snakemake.output.png, win_label=plots.JUDGE_LABEL)
else:
    plots.plot_frontier(summary, theory, snakemake.output.png)
log.info("wrote %s (%s win rates)", snakemake.output.png, snakemake.params.win_rate)
