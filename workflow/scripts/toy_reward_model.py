"""Toy world: train the reward model (the proxy) on the proxy's labels, which reward filler (bonbon.toy)."""

from bonbon.warm import hand_over

hand_over(globals())  # the job runs in a warm worker (imports done) where one is up: bonbon.warm

import json
from pathlib import Path

from bonbon.jobs import setup_job
from bonbon.tables import read_table
from bonbon.toy import ToyModelConfig, train_reward_model

snakemake = globals()["snakemake"]
log, _ = setup_job(snakemake, model_job=True)
toy = snakemake.params.toy
corpus = read_table(snakemake.input.corpus, ["prompt", "response", "proxy_quality"])
out = Path(snakemake.output.summary).parent  # the outputs are the model's files (MODEL_FILES)
tokenizer = Path(snakemake.input.tokenizer[0]).parent
settings = {k: v for k, v in toy["reward_model"].items() if k != "max_length"}  # max_length: the tokenizer's
summary = train_reward_model(corpus, tokenizer, out, ToyModelConfig(**settings), toy["seed"],
                             label="proxy_quality")
(out / "toy_summary.json").write_text(json.dumps(summary, indent=2))
log.info("reward model: %s", summary)
