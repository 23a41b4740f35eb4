"""One policy's samples beside their reference opponents (best-of-n built from reference draws), with the
proxy's verdict (win) and the judge's (judge_win)."""

from bonbon.evaluate import add_judge_wins, best_of_n, pair_with_opponents
from bonbon.jobs import setup_job
from bonbon.tables import POLICY_SAMPLE_COLUMNS, read_shards, read_table, write_parquet

snakemake = globals()["snakemake"]
log, _ = setup_job(snakemake)
p = snakemake.params
source = ", ".join(snakemake.input.samples)
reference = read_table(snakemake.input.reference, POLICY_SAMPLE_COLUMNS)
samples = read_shards(snakemake.input.samples, POLICY_SAMPLE_COLUMNS, source)  # best-of-n: its candidate blocks
if p.policy["kind"] == "best_of_n":  # the best of its n candidates per replicate
    samples = best_of_n(samples, p.policy["n"], p.k)
table = pair_with_opponents(samples, reference, p.k, source)
table = add_judge_wins(table, reference, p.k, source)
log.info("%s: %d samples on %d prompts, mean win %.3f (proxy), %.3f (judge)", p.policy["name"], len(table),
         table["prompt_id"].nunique(), table["win"].mean(), table["judge_win"].mean())
write_parquet(table, snakemake.output.table)
