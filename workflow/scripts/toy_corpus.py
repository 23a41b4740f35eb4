"""Toy world: the synthetic HH corpus and the prompt set."""

from bonbon.jobs import setup_job
from bonbon.tables import write_parquet
from bonbon.toy import make_corpus, make_prompt_set

snakemake = globals()["snakemake"]
log, _ = setup_job(snakemake)
toy = snakemake.params.toy
corpus = make_corpus(toy["n_dialogues"], toy["seed"])
prompts = make_prompt_set(toy["n_prompts"], toy["eval_fraction"], toy["seed"])
log.info("corpus: %d dialogues, quality mean %.3f sd %.3f", len(corpus), corpus["quality"].mean(), corpus["quality"].std())
log.info("prompt set: %d prompts (%d eval)", len(prompts), (prompts["split"] == "eval").sum())
write_parquet(corpus, snakemake.output.corpus)
write_parquet(prompts, snakemake.output.prompts)
