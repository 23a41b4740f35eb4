"""Gather the shards of a pair file's reference log-probs into the table one job would write."""

from bonbon.warm import hand_over

hand_over(globals())  # the job runs in a warm worker (imports done) where one is up: bonbon.warm

from bonbon.jobs import setup_job
from bonbon.reference import gather_reference_shards
from bonbon.tables import REF_COLUMNS, read_table, write_parquet

snakemake = globals()["snakemake"]
log, _ = setup_job(snakemake)
shards = [read_table(path, REF_COLUMNS, allow_empty=True) for path in snakemake.input.shards]
table = gather_reference_shards(shards)
log.info("gathered %d rows from %d shards", len(table), len(shards))
write_parquet(table, snakemake.output.ref_logps)
