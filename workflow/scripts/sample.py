"""Samples from one policy on the eval prompts, with policy and reference log-probs and rewards."""

from bonbon.evaluate import policy_seed, sample_and_score
from bonbon.generate import SamplingConfig, split_generation_config
from bonbon.gpus import claim_gpus
from bonbon.io import read_table, set_threads, setup_job_logging, torch_device, write_parquet
from bonbon.prompts import build_prompt_table

snakemake = globals()["snakemake"]
log = setup_job_logging(snakemake.log[0])
set_threads(snakemake.threads)
claim_gpus(int(snakemake.resources.get("gpu", 0)))  # distinct GPUs for concurrent local jobs
p = snakemake.params
prompts = read_table(snakemake.input.prompts, ["prompt_id", "prompt", "split"])
prompts = prompts[prompts["split"] == "eval"]
if prompts.empty:
    raise ValueError(f"{snakemake.input.prompts}: no eval prompts to sample on")
if p.max_prompts:
    prompts, _ = build_prompt_table(prompts, 0.0, p.generation["seed"], p.max_prompts)
fields, backend, vllm_options = split_generation_config(p.generation)
cfg = SamplingConfig(**{**fields, "n": p.n, "seed": policy_seed(fields["seed"], p.name)})
log.info("%s shard %d of %d: %d eval prompts x %d samples from %s", p.name, p.shard[0] + 1, p.shard[1],
         len(prompts), cfg.n, p.policy)
samples, counts = sample_and_score(p.policy, p.reference, p.reward, prompts, cfg, torch_device(p.runtime["device"]),
                                   p.runtime["batch_size"], p.is_reference, shard=p.shard, backend=backend,
                                   vllm_options=vllm_options)
log.info("done: %s", counts)
write_parquet(samples, snakemake.output.samples)
