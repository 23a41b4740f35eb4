"""Reference generation: n samples for each train prompt."""

from bonbon.generate import SamplingConfig, sample_with_backend, split_generation_config
from bonbon.gpus import claim_gpus
from bonbon.io import read_table, set_threads, setup_job_logging, torch_device, write_parquet

snakemake = globals()["snakemake"]
log = setup_job_logging(snakemake.log[0])
set_threads(snakemake.threads)
claim_gpus(int(snakemake.resources.get("gpu", 0)))  # distinct GPUs for concurrent local jobs
prompts = read_table(snakemake.input.prompts, ["prompt_id", "prompt", "split"])
prompts = prompts[prompts["split"] == "train"]
device = torch_device(snakemake.params.runtime["device"])
fields, backend, vllm_options = split_generation_config(snakemake.params.generation)
cfg = SamplingConfig(n=snakemake.params.n, **fields)
shard, shards = snakemake.params.shard
log.info("shard %d of %d: sampling from %d prompts x %d responses from %s on %s with %s: %s", shard + 1, shards,
         len(prompts), cfg.n, snakemake.params.model, device, backend, cfg)
samples, counts, _ = sample_with_backend(snakemake.params.model, prompts, cfg, device, backend, vllm_options,
                                         shard=shard, shards=shards)
log.info("done: %s", counts)
write_parquet(samples, snakemake.output.samples)
