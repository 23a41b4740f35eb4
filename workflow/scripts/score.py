"""Reward scoring of every sample."""

from bonbon.warm import hand_over

hand_over(globals())  # the job runs in a warm worker (imports done) where one is up: bonbon.warm

import pandas as pd

from bonbon.jobs import setup_job
from bonbon.reward_functions import load_scorer
from bonbon.score import score_samples
from bonbon.tables import SAMPLE_COLUMNS, read_table, write_parquet

snakemake = globals()["snakemake"]
log, device = setup_job(snakemake, model_job=True)
# a shard of the generation can be empty (more shards than batches of prompts): it scores to an empty table
samples = read_table(snakemake.input.samples, SAMPLE_COLUMNS, allow_empty=True)
if samples.empty:
    log.info("%s: empty shard, nothing to score", snakemake.input.samples)
    write_parquet(samples.assign(reward=pd.Series(dtype="float64")), snakemake.output.rewards)
else:
    model, tokenizer = load_scorer(snakemake.params.model, device)
    rewards, counts = score_samples(samples, model, tokenizer, snakemake.params.runtime["batch_size"])
    limit = f" (max length {tokenizer.model_max_length})" if tokenizer is not None else ""
    log.info("scored with %s%s: %s", snakemake.params.model, limit, counts)
    write_parquet(rewards, snakemake.output.rewards)
