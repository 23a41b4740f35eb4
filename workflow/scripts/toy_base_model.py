"""Toy world: pretrain the base model."""

from bonbon.warm import hand_over

hand_over(globals())  # the job runs in a warm worker (imports done) where one is up: bonbon.warm

import json
from pathlib import Path

from bonbon.jobs import setup_job
from bonbon.tables import read_table
from bonbon.toy import ToyModelConfig, pretrain_base_model

snakemake = globals()["snakemake"]
log, _ = setup_job(snakemake, model_job=True)
toy = snakemake.params.toy
corpus = read_table(snakemake.input.corpus, ["prompt", "response"])
out = Path(snakemake.output.summary).parent  # the outputs are the model's files (MODEL_FILES)
tokenizer = Path(snakemake.input.tokenizer[0]).parent
summary = pretrain_base_model(corpus, tokenizer, out, ToyModelConfig(**toy["base_model"]), toy["seed"])
(out / "toy_summary.json").write_text(json.dumps(summary, indent=2))
log.info("base model: %s", summary)
