"""Prompts: read the source, check the HH format, assign ids and splits."""

from bonbon.io import setup_job_logging, write_parquet
from bonbon.prompts import build_prompt_table, read_prompt_file

snakemake = globals()["snakemake"]
log = setup_job_logging(snakemake.log[0])
dataset = snakemake.params.dataset
source = read_prompt_file(snakemake.input.source)
table, counts = build_prompt_table(source, dataset["eval_fraction"], dataset["seed"], dataset["max_prompts"])
if not (table["split"] == "train").any():
    raise ValueError(f"{snakemake.input.source}: no prompt falls in the train split ({counts})")
log.info("%s: %s", snakemake.input.source, counts)
write_parquet(table, snakemake.output.prompts)
