"""A dataset's own chosen/rejected pairs (HH format) as a training source."""

from bonbon.io import setup_job_logging, write_parquet
from bonbon.sources import hh_pairs, load_hh

snakemake = globals()["snakemake"]
log = setup_job_logging(snakemake.log[0])
dataset = snakemake.params.dataset
frame = load_hh(dataset["path"], dataset["data_dir"], dataset["splits"]["train"])
pairs, counts = hh_pairs(frame, source=dataset["path"])
if pairs.empty:
    raise ValueError(f"{dataset['path']}: no usable chosen/rejected pairs ({counts})")
log.info("%s: %s", dataset["path"], counts)
write_parquet(pairs, snakemake.output.pairs)
