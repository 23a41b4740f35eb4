"""Reward scoring of every sample."""

import pandas as pd

from bonbon.gpus import claim_gpus
from bonbon.io import SAMPLE_COLUMNS, read_table, set_threads, setup_job_logging, torch_device, write_parquet
from bonbon.score import load_reward_model, score_samples

snakemake = globals()["snakemake"]
log = setup_job_logging(snakemake.log[0])
set_threads(snakemake.threads)
claim_gpus(int(snakemake.resources.get("gpu", 0)))  # distinct GPUs for concurrent local jobs
# a shard of the generation can be empty (more shards than batches of prompts): it scores to an empty table
samples = read_table(snakemake.input.samples, SAMPLE_COLUMNS, allow_empty=True)
if samples.empty:
    log.info("%s: empty shard, nothing to score", snakemake.input.samples)
    write_parquet(samples.assign(reward=pd.Series(dtype="float64")), snakemake.output.rewards)
else:
    model, tokenizer = load_reward_model(snakemake.params.model, torch_device(snakemake.params.runtime["device"]))
    rewards, counts = score_samples(samples, model, tokenizer, snakemake.params.runtime["batch_size"])
    log.info("scored with %s (max length %d): %s", snakemake.params.model, tokenizer.model_max_length, counts)
    write_parquet(rewards, snakemake.output.rewards)
