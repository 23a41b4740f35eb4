"""Reference generation: n samples for each train prompt."""

from bonbon.generate import SamplingConfig, generate_samples, load_policy
from bonbon.gpus import claim_gpus
from bonbon.io import read_table, set_threads, setup_job_logging, torch_device, write_parquet

snakemake = globals()["snakemake"]
log = setup_job_logging(snakemake.log[0])
set_threads(snakemake.threads)
claim_gpus(int(snakemake.resources.get("gpu", 0)))  # distinct GPUs for concurrent local jobs
prompts = read_table(snakemake.input.prompts, ["prompt_id", "prompt", "split"])
prompts = prompts[prompts["split"] == "train"]
device = torch_device(snakemake.params.device)
model, tokenizer = load_policy(snakemake.params.model, device)
cfg = SamplingConfig(n=snakemake.params.n, **snakemake.params.generation)
log.info("shard %d of %d: sampling from %d prompts x %d responses from %s on %s: %s", snakemake.params.shard[0] + 1, snakemake.params.shard[1], len(prompts), cfg.n, snakemake.params.model, device, cfg)
shard, shards = snakemake.params.shard
samples, counts = generate_samples(model, tokenizer, prompts, cfg, shard=shard, shards=shards)
log.info("done: %s", counts)
write_parquet(samples, snakemake.output.samples)
