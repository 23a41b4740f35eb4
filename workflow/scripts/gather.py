"""Gather shards (and blocks) into one table, in (prompt_id, sample_idx) order: the same table as one
job makes."""

from bonbon.warm import hand_over

hand_over(globals())  # the job runs in a warm worker (imports done) where one is up: bonbon.warm

import pyarrow.parquet as pq

from bonbon.jobs import setup_job
from bonbon.tables import SAMPLE_COLUMNS, read_shards, write_parquet

snakemake = globals()["snakemake"]
log, _ = setup_job(snakemake)
table = read_shards(snakemake.input.shards, SAMPLE_COLUMNS, snakemake.output.table)
empty = sum(pq.read_metadata(path).num_rows == 0 for path in snakemake.input.shards)
log.info("gathered %d rows from %d tables (%d empty)", len(table), len(snakemake.input.shards), empty)
write_parquet(table, snakemake.output.table)
