"""One policy's samples, each against all M reference opponents of its prompt (best-of-n built from
reference draws), with the proxy's mean verdict (win) and the judge's (judge_win)."""

from bonbon.warm import hand_over

hand_over(globals())  # the job runs in a warm worker (imports done) where one is up: bonbon.warm

from bonbon.evaluate import add_judge_wins, best_of_n_samples, pair_with_opponents
from bonbon.jobs import setup_job
from bonbon.tables import POLICY_SAMPLE_COLUMNS, read_shards, write_parquet

snakemake = globals()["snakemake"]
log, _ = setup_job(snakemake)
p = snakemake.params
source = ", ".join(snakemake.input.samples)
opponents = read_shards(snakemake.input.opponents, POLICY_SAMPLE_COLUMNS,
                        ", ".join(snakemake.input.opponents))
# best-of-n: its candidate blocks
samples = read_shards(snakemake.input.samples, POLICY_SAMPLE_COLUMNS, source)
if p.policy["kind"] == "best_of_n":  # the best of its n candidates per replicate
    samples = best_of_n_samples(samples, p.policy["n"], p.k)
table = pair_with_opponents(samples, opponents, p.k, p.opponents, source)
table = add_judge_wins(table, opponents, p.opponents, source)
log.info("%s: %d samples on %d prompts against %d opponents each, mean win %.3f (proxy), %.3f (judge)",
         p.policy["name"], len(table), table["prompt_id"].nunique(), p.opponents, table["win"].mean(),
         table["judge_win"].mean())
write_parquet(table, snakemake.output.table)
