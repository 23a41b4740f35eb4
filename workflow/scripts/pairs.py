"""Best/worst pairs of the first n samples of each prompt, from the scored blocks that hold them."""

from bonbon.warm import hand_over

hand_over(globals())  # the job runs in a warm worker (imports done) where one is up: bonbon.warm

from bonbon.jobs import setup_job
from bonbon.pairs import select_pairs
from bonbon.tables import REWARD_COLUMNS, read_shards, write_parquet

snakemake = globals()["snakemake"]
log, _ = setup_job(snakemake)
rewards = read_shards(snakemake.input.rewards, REWARD_COLUMNS, snakemake.output.pairs)
pairs, counts = select_pairs(rewards, snakemake.params.n)
log.info("n=%d: %d prompts, %d pairs, %d dropped because all %d rewards tie", snakemake.params.n,
         counts["prompts"], counts["pairs"], counts["all_tied"], snakemake.params.n)
write_parquet(pairs, snakemake.output.pairs)
