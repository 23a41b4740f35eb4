"""Toy world: pretrain the base model or train the reward model (by rule name)."""

import json
from pathlib import Path

import pandas as pd

from bonbon.io import set_threads, setup_job_logging
from bonbon.toy import ToyModelConfig, pretrain_base_model, train_reward_model

snakemake = globals()["snakemake"]
log = setup_job_logging(snakemake.log[0])
set_threads(snakemake.threads)
toy = snakemake.params.toy
corpus = pd.read_parquet(snakemake.input.corpus)
out = Path(snakemake.output.summary).parent
tokenizer = Path(snakemake.input.tokenizer[0]).parent
if snakemake.rule == "toy_base_model":
    settings = toy["base_model"]
    summary = pretrain_base_model(corpus, tokenizer, out, ToyModelConfig(**settings), toy["seed"])
else:
    settings = {k: v for k, v in toy["reward_model"].items() if k != "max_length"}
    summary = train_reward_model(corpus, tokenizer, out, ToyModelConfig(**settings), toy["seed"])
(out / "toy_summary.json").write_text(json.dumps(summary, indent=2))
log.info("%s: %s", snakemake.rule, summary)
