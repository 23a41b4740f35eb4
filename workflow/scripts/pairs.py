"""Best/worst pairs of the first n samples of each prompt."""

from bonbon.io import REWARD_COLUMNS, read_table, setup_job_logging, write_parquet
from bonbon.pairs import select_pairs

snakemake = globals()["snakemake"]
log = setup_job_logging(snakemake.log[0])
rewards = read_table(snakemake.input.rewards, REWARD_COLUMNS)
pairs, counts = select_pairs(rewards, snakemake.params.n)
log.info("n=%d: %d prompts, %d pairs, %d dropped because all %d rewards tie", snakemake.params.n,
         counts["prompts"], counts["pairs"], counts["all_tied"], snakemake.params.n)
write_parquet(pairs, snakemake.output.pairs)
