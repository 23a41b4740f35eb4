"""Reference log-probs of every chosen and rejected response of a pair file, once."""

from bonbon.warm import hand_over

hand_over(globals())  # the job runs in a warm worker (imports done) where one is up: bonbon.warm

from bonbon.jobs import setup_job
from bonbon.reference import write_reference_logps

snakemake = globals()["snakemake"]
log, device = setup_job(snakemake, model_job=True)
p = snakemake.params
table = write_reference_logps(p.model, snakemake.input.pairs, snakemake.output.ref_logps, p.max_prompt_length,
                              p.max_length, p.runtime["batch_size"], shard=p.shard, device=device)
log.info("%s shard %d of %d: %d pairs, %d without a reference log-prob (emptied by truncation)",
         snakemake.input.pairs, p.shard[0] + 1, p.shard[1], len(table),
         int(table["chosen_ref_logp"].isna().sum()))
