"""Reference generation: one block of sample indices [first, stop) for each train prompt."""

from bonbon.warm import hand_over

hand_over(globals())  # the job runs in a warm worker (imports done) where one is up: bonbon.warm

from bonbon.generate import sample_with_backend, split_generation_config
from bonbon.jobs import setup_job
from bonbon.sampling import SamplingConfig
from bonbon.tables import PROMPT_COLUMNS, read_table, write_parquet

snakemake = globals()["snakemake"]
log, device = setup_job(snakemake, model_job=True)
prompts = read_table(snakemake.input.prompts, PROMPT_COLUMNS)
prompts = prompts[prompts["split"] == "train"]
fields, backend, vllm_options = split_generation_config(snakemake.params.generation)
first, stop = snakemake.params.samples
cfg = SamplingConfig(n=stop - first, first_sample=first, **fields)
shard, shards = snakemake.params.shard
log.info("shard %d of %d: sampling from %d prompts x %d responses from %s on %s with %s: %s", shard + 1,
         shards, len(prompts), cfg.n, snakemake.params.model, device, backend, cfg)
samples, counts, _ = sample_with_backend(snakemake.params.model, prompts, cfg, device, backend, vllm_options,
                                         shard=shard, shards=shards)
log.info("done: %s", counts)
write_parquet(samples, snakemake.output.samples)
