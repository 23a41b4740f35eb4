"""Toy world: byte-level BPE tokenizers for the policy and the reward model."""

from bonbon.warm import hand_over

hand_over(globals())  # the job runs in a warm worker (imports done) where one is up: bonbon.warm

from pathlib import Path

from bonbon.jobs import setup_job
from bonbon.tables import read_table
from bonbon.toy import train_tokenizers

snakemake = globals()["snakemake"]
log, _ = setup_job(snakemake)
toy = snakemake.params.toy
corpus = read_table(snakemake.input.corpus, ["prompt", "response"])
policy, reward = (Path(files[0]).parent for files in (snakemake.output.policy, snakemake.output.reward))
train_tokenizers((corpus["prompt"] + corpus["response"]).tolist(), toy["vocab_size"], policy, reward,
                 toy["reward_model"]["max_length"], chat=toy["chat"])
log.info("tokenizers written to %s and %s", policy, reward)
