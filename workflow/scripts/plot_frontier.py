"""The frontier figure: win rate vs KL (and vs length) of every policy, one panel per n, with the best-of-n
theory; the judge's win rates (evaluation.frontier_win_rate: judge) or the proxy's, and the axes say whose."""

from bonbon.warm import hand_over

hand_over(globals())  # the job runs in a warm worker (imports done) where one is up: bonbon.warm

from bonbon import plots
from bonbon.frontier import judge_view
from bonbon.jobs import setup_job
from bonbon.tables import read_table

snakemake = globals()["snakemake"]
log, _ = setup_job(snakemake)
p = snakemake.params
summary = read_table(snakemake.input.summary, ["policy", "kind", "win_rate", "kl"])
theory = read_table(snakemake.input.theory, ["n", "win_rate", "kl"])
if p.win_rate == "judge" and p.separate_judge:
    fig = plots.plot_frontier(judge_view(summary), theory, snakemake.output.png, win_label=plots.JUDGE_LABEL,
                              whose=plots.JUDGE_WHO)
elif p.win_rate == "judge":  # no models.judge: the reward model judges, as in the paper
    fig = plots.plot_frontier(judge_view(summary), theory, snakemake.output.png,
                              win_label=plots.PROXY_LABEL.replace(
                                  "ties ½", "the judge, as no models.judge is set; ties ½"),
                              whose="the reward model (no separate judge)")
else:
    fig = plots.plot_frontier(summary, theory, snakemake.output.png)
plots.write_series(fig, snakemake.output.series)
log.info("wrote %s and %s (%s win rates)", snakemake.output.png, snakemake.output.series, p.win_rate)
