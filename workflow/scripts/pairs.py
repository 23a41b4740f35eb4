"""Best/worst pairs of the first n samples of each prompt."""

from bonbon.jobs import setup_job
from bonbon.pairs import select_pairs
from bonbon.tables import REWARD_COLUMNS, read_table, write_parquet

snakemake = globals()["snakemake"]
log, _ = setup_job(snakemake)
rewards = read_table(snakemake.input.rewards, REWARD_COLUMNS)
pairs, counts = select_pairs(rewards, snakemake.params.n)
log.info("n=%d: %d prompts, %d pairs, %d dropped because all %d rewards tie", snakemake.params.n,
         counts["prompts"], counts["pairs"], counts["all_tied"], snakemake.params.n)
write_parquet(pairs, snakemake.output.pairs)
