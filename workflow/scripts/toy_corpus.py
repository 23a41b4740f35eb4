"""Toy world: the synthetic HH corpus and the prompt set."""

from bonbon.warm import hand_over

hand_over(globals())  # the job runs in a warm worker (imports done) where one is up: bonbon.warm

from bonbon.jobs import setup_job
from bonbon.tables import write_parquet
from bonbon.toy import Filler, make_corpus, make_prompt_set

snakemake = globals()["snakemake"]
log, _ = setup_job(snakemake)
toy = snakemake.params.toy
corpus = make_corpus(toy["n_dialogues"], toy["seed"], Filler(**toy["filler"]))
prompts = make_prompt_set(toy["n_prompts"], toy["eval_fraction"], toy["seed"])
log.info("corpus: %d dialogues, quality mean %.3f sd %.3f, proxy's labels mean %.3f sd %.3f, %.2f filler "
         "sentences per answer", len(corpus), corpus["quality"].mean(), corpus["quality"].std(),
         corpus["proxy_quality"].mean(), corpus["proxy_quality"].std(), corpus["filler"].mean())
log.info("prompt set: %d prompts (%d eval)", len(prompts), (prompts["split"] == "eval").sum())
write_parquet(corpus, snakemake.output.corpus)
write_parquet(prompts, snakemake.output.prompts)
