"""A dataset's own chosen/rejected pairs (HH format) as a training source."""

from bonbon.jobs import setup_job
from bonbon.sources import hh_pairs, load_hh
from bonbon.tables import write_parquet

snakemake = globals()["snakemake"]
log, _ = setup_job(snakemake)
dataset = snakemake.params.dataset
frame = load_hh(dataset["path"], dataset["data_dir"], dataset["splits"]["train"])
pairs, counts = hh_pairs(frame, source=dataset["path"])
if pairs.empty:
    raise ValueError(f"{dataset['path']}: no usable chosen/rejected pairs ({counts})")
log.info("%s: %s", dataset["path"], counts)
write_parquet(pairs, snakemake.output.pairs)
