"""SFT of the base model on the SFT targets: the reference model of every later stage."""

from bonbon.warm import hand_over

hand_over(globals())  # the job runs in a warm worker (imports done) where one is up: bonbon.warm

from bonbon.chat import chat_texts
from bonbon.hub import is_trl, load_rows, sft_rows
from bonbon.jobs import setup_job
from bonbon.models import load_tokenizer
from bonbon.sources import hh_sft_texts, load_hh
from bonbon.tables import read_table
from bonbon.train import config_from_dict, sft

snakemake = globals()["snakemake"]
log, _ = setup_job(snakemake, model_job=True)
p = snakemake.params
if p.data == "toy":
    texts = read_table(snakemake.input.data, ["prompt", "response"])[["prompt", "response"]]
elif is_trl(p.dataset):  # the chosen responses (or the assistant turns) of a TRL-layout train split
    texts = sft_rows(*load_rows(p.dataset["path"], p.dataset.get("data_dir"), p.dataset["splits"]["train"]))
    texts = texts[["prompt", "response"]]
else:  # the chosen responses of an HH dataset's train split, as in the paper
    texts = hh_sft_texts(load_hh(p.dataset["path"], p.dataset["data_dir"], p.dataset["splits"]["train"]))
# rendered where the policy has a chat template
texts = chat_texts(load_tokenizer(p.base), texts, p.system_prompt)
log.info("SFT on %d (prompt, response) rows from %s", len(texts), p.data)
summary = sft(p.base, texts, p.out, config_from_dict({**p.training, **p.runtime["training"], "loss": "sft"}))
log.info("SFT done: %d steps", summary["steps"])
