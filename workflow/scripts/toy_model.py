"""Toy world: pretrain the base model, train the reward model or the judge (by rule name)."""

import json
from pathlib import Path

import pandas as pd

from bonbon.io import set_threads, setup_job_logging, write_parquet
from bonbon.toy import ToyModelConfig, judge_seed, make_judge_corpus, pretrain_base_model, train_reward_model

snakemake = globals()["snakemake"]
log = setup_job_logging(snakemake.log[0])
set_threads(snakemake.threads)
toy = snakemake.params.toy
out = Path(snakemake.output.model)
if snakemake.rule == "toy_judge_model":
    settings = {k: v for k, v in toy["judge_model"].items() if k != "n_dialogues"}
    corpus = make_judge_corpus(toy["judge_model"]["n_dialogues"], toy["seed"])
    write_parquet(corpus, snakemake.output.corpus)
    summary = train_reward_model(corpus, snakemake.input.tokenizer, out, ToyModelConfig(**settings),
                                 judge_seed(toy["seed"]))
elif snakemake.rule == "toy_base_model":
    corpus = pd.read_parquet(snakemake.input.corpus)
    settings = toy["base_model"]
    summary = pretrain_base_model(corpus, snakemake.input.tokenizer, out, ToyModelConfig(**settings), toy["seed"])
else:
    corpus = pd.read_parquet(snakemake.input.corpus)
    settings = {k: v for k, v in toy["reward_model"].items() if k != "max_length"}
    summary = train_reward_model(corpus, snakemake.input.tokenizer, out, ToyModelConfig(**settings), toy["seed"])
(out / "toy_summary.json").write_text(json.dumps(summary, indent=2))
log.info("%s: %s", snakemake.rule, summary)
