"""Reward scoring of every sample."""

from bonbon.gpus import claim_gpus
from bonbon.io import SAMPLE_COLUMNS, read_table, set_threads, setup_job_logging, torch_device, write_parquet
from bonbon.score import load_reward_model, score_samples

snakemake = globals()["snakemake"]
log = setup_job_logging(snakemake.log[0])
set_threads(snakemake.threads)
claim_gpus(int(snakemake.resources.get("gpu", 0)))  # distinct GPUs for concurrent local jobs
samples = read_table(snakemake.input.samples, SAMPLE_COLUMNS)
model, tokenizer = load_reward_model(snakemake.params.model, torch_device(snakemake.params.device))
rewards, counts = score_samples(samples, model, tokenizer, snakemake.params.batch_size)
log.info("scored with %s (max length %d): %s", snakemake.params.model, tokenizer.model_max_length, counts)
write_parquet(rewards, snakemake.output.rewards)
