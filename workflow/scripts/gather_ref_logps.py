"""Gather the shards of a pair file's reference log-probs into the table one job would write."""

from bonbon.io import read_table, setup_job_logging, write_parquet
from bonbon.reference import REF_COLUMNS, gather_reference_shards

snakemake = globals()["snakemake"]
log = setup_job_logging(snakemake.log[0])
shards = [read_table(path, REF_COLUMNS, allow_empty=True) for path in snakemake.input.shards]
table = gather_reference_shards(shards)
log.info("gathered %d rows from %d shards", len(table), len(shards))
write_parquet(table, snakemake.output.ref_logps)
