"""One policy's samples beside their reference opponents (best-of-n built from reference draws)."""

from bonbon.evaluate import add_judge_wins, best_of_n, pair_with_opponents
from bonbon.io import REWARD_COLUMNS, read_table, setup_job_logging, write_parquet

snakemake = globals()["snakemake"]
log = setup_job_logging(snakemake.log[0])
p = snakemake.params
columns = [*REWARD_COLUMNS, "policy_logp", "reference_logp", "judge_reward"]
samples = read_table(snakemake.input.samples, columns)
reference = read_table(snakemake.input.reference, columns)
if p.policy["kind"] == "best_of_n":
    samples = best_of_n(reference, p.policy["n"], p.k, p.n_max)
table = pair_with_opponents(samples, reference, p.k, snakemake.input.samples)
table = add_judge_wins(table, reference, p.k, snakemake.input.samples)
log.info("%s: %d samples on %d prompts, mean win %.3f (proxy), %.3f (judge)", p.policy["name"], len(table),
         table["prompt_id"].nunique(), table["win"].mean(), table["judge_win"].mean())
write_parquet(table, snakemake.output.table)
