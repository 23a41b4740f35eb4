"""Samples from one policy on the eval prompts (sample indices [first, stop): 0 … k-1 for a policy, a
block of best-of-n's candidates for the reference), with policy and reference log-probs, rewards and the
judge's rewards."""

from bonbon.warm import hand_over

hand_over(globals())  # the job runs in a warm worker (imports done) where one is up: bonbon.warm

from bonbon.generate import sample_and_score, split_generation_config
from bonbon.jobs import setup_job
from bonbon.prompts import build_prompt_table
from bonbon.sampling import SamplingConfig, policy_seed
from bonbon.tables import PROMPT_COLUMNS, read_table, write_parquet

snakemake = globals()["snakemake"]
log, device = setup_job(snakemake, model_job=True)
p = snakemake.params
prompts = read_table(snakemake.input.prompts, PROMPT_COLUMNS)
prompts = prompts[prompts["split"] == "eval"]
if prompts.empty:
    raise ValueError(f"{snakemake.input.prompts}: no eval prompts to sample on")
if p.max_prompts:
    prompts, _ = build_prompt_table(prompts, 0.0, p.generation["seed"], p.max_prompts)
fields, backend, vllm_options = split_generation_config(p.generation)
first, stop = p.samples
cfg = SamplingConfig(**{**fields, "n": stop - first, "first_sample": first,
                        "seed": policy_seed(fields["seed"], p.stream)})
log.info("%s shard %d of %d: %d eval prompts x samples %d..%d from %s (seed of %s)", p.name, p.shard[0] + 1,
         p.shard[1], len(prompts), first, stop - 1, p.policy, p.stream)
samples, counts = sample_and_score(p.policy, p.reference, p.reward, prompts, cfg, device,
                                   p.runtime["batch_size"], p.is_reference, shard=p.shard, backend=backend,
                                   vllm_options=vllm_options, judge_path=p.judge)
log.info("done (judge %s): %s", p.judge, counts)
write_parquet(samples, snakemake.output.samples)
