"""Gather shards into one table, in (prompt_id, sample_idx) order: the same table as one job makes."""

import pandas as pd

from bonbon.jobs import setup_job
from bonbon.tables import SAMPLE_COLUMNS, read_table, write_parquet

snakemake = globals()["snakemake"]
log, _ = setup_job(snakemake)
shards = [read_table(path, SAMPLE_COLUMNS, allow_empty=True) for path in snakemake.input.shards]
filled = [shard for shard in shards if not shard.empty]  # an empty shard adds no rows, nor its dtypes
if not filled:
    raise ValueError(f"{snakemake.output.table}: all {len(shards)} shards are empty")
table = pd.concat(filled, ignore_index=True).sort_values(["prompt_id", "sample_idx"], kind="stable")
duplicated = table.duplicated(["prompt_id", "sample_idx"])
if duplicated.any():
    raise ValueError(f"shards overlap: prompt {table.loc[duplicated, 'prompt_id'].iloc[0]!r} appears twice")
log.info("gathered %d rows from %d shards (%d empty)", len(table), len(shards), len(shards) - len(filled))
write_parquet(table.reset_index(drop=True), snakemake.output.table)
