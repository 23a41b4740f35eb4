"""Toy world: train the judge, a reward model on its own corpus from its own seed, on the gold labels
(``quality``, which penalise the filler the proxy's labels reward; bonbon.toy)."""

from bonbon.warm import hand_over

hand_over(globals())  # the job runs in a warm worker (imports done) where one is up: bonbon.warm

import json
from pathlib import Path

from bonbon.jobs import setup_job
from bonbon.tables import write_parquet
from bonbon.toy import Filler, ToyModelConfig, judge_seed, make_judge_corpus, train_reward_model

snakemake = globals()["snakemake"]
log, _ = setup_job(snakemake, model_job=True)
toy = snakemake.params.toy
settings = {k: v for k, v in toy["judge_model"].items() if k != "n_dialogues"}
corpus = make_judge_corpus(toy["judge_model"]["n_dialogues"], toy["seed"], Filler(**toy["filler"]))
write_parquet(corpus, snakemake.output.corpus)
out = Path(snakemake.output.summary).parent  # the outputs are the model's files (MODEL_FILES)
tokenizer = Path(snakemake.input.tokenizer[0]).parent
summary = train_reward_model(corpus, tokenizer, out, ToyModelConfig(**settings), judge_seed(toy["seed"]),
                             label="quality")
(out / "toy_summary.json").write_text(json.dumps(summary, indent=2))
log.info("judge model: %s", summary)
