"""SFT of the base model on the SFT targets: the reference model of every later stage."""

import pandas as pd

from bonbon.gpus import claim_gpus
from bonbon.io import set_threads, setup_job_logging
from bonbon.sources import hh_sft_texts, load_hh
from bonbon.train import config_from_dict, sft

snakemake = globals()["snakemake"]
log = setup_job_logging(snakemake.log[0])
set_threads(snakemake.threads)
claim_gpus(int(snakemake.resources.get("gpu", 0)))  # distinct GPUs for concurrent local jobs
p = snakemake.params
if p.data == "toy":
    texts = pd.read_parquet(snakemake.input.data, columns=["prompt", "response"])
else:  # the chosen responses of an HH dataset's train split, as in the paper
    texts = hh_sft_texts(load_hh(p.dataset["path"], p.dataset["data_dir"], p.dataset["splits"]["train"]))
log.info("SFT on %d (prompt, response) rows from %s", len(texts), p.data)
summary = sft(p.base, texts, p.out, config_from_dict({**p.training, **p.runtime["training"]}))
log.info("SFT done: %d steps", summary["steps"])
