"""SFT of the base model on the SFT targets: the reference model of every later stage."""

import pandas as pd

from bonbon.io import set_threads, setup_job_logging
from bonbon.train import config_from_dict, sft

snakemake = globals()["snakemake"]
log = setup_job_logging(snakemake.log[0])
set_threads(snakemake.threads)
p = snakemake.params
texts = pd.read_parquet(snakemake.input.corpus, columns=["prompt", "response"])
summary = sft(p.base, texts, p.out, config_from_dict(p.training))
log.info("SFT done: %d steps", summary["steps"])
