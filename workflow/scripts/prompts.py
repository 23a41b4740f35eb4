"""Prompts: read the source, check the HH format (or the conversations), assign ids and splits, and
render them with the policy's chat template where it has one."""

from bonbon.warm import hand_over

hand_over(globals())  # the job runs in a warm worker (imports done) where one is up: bonbon.warm

from bonbon.chat import has_chat_template, read_messages_file, render_prompt_table, template_system_prompt
from bonbon.hub import is_trl, load_prompts
from bonbon.jobs import setup_job
from bonbon.models import load_tokenizer
from bonbon.prompts import build_prompt_table, read_prompt_file
from bonbon.sources import load_hh_prompts
from bonbon.tables import write_parquet
from bonbon.templates import read_template_prompts

snakemake = globals()["snakemake"]
log, _ = setup_job(snakemake)
dataset = snakemake.params.dataset
if is_trl(dataset):  # TRL's layouts (bonbon.hub): prompt, messages or implicit-prompt columns
    source = load_prompts(dataset)
elif dataset["source"] == "hf":  # HH's own train/test splits become train/eval
    splits = dataset["splits"]
    source = load_hh_prompts(dataset["path"], dataset["data_dir"], (splits["train"], splits["eval"]))
elif dataset["source"] == "templates":  # every template x subject of a file kept in the repository
    source = read_template_prompts(snakemake.input.source)
elif dataset["format"] == "messages":
    source = read_messages_file(snakemake.input.source)
else:
    source = read_prompt_file(snakemake.input.source)
table, counts = build_prompt_table(source, dataset["eval_fraction"], dataset["seed"], dataset["max_prompts"])
tokenizer = load_tokenizer(snakemake.params.tokenizer)
if has_chat_template(tokenizer):  # ids and splits stay those of the HH text; the prompt is rendered
    choice = snakemake.params.system_prompt
    default = template_system_prompt(tokenizer)
    log.info("chat.system_prompt: %s (the template's default system prompt: %s)", choice,
             "none" if default is None else repr(default))
    table, rendered = render_prompt_table(table, tokenizer, snakemake.params.max_prompt_length, choice)
    counts.update(rendered)
elif snakemake.params.system_prompt != "template":
    log.warning("chat.system_prompt %r has no effect: the policy's tokenizer has no chat template "
                "(HH text prompts)", snakemake.params.system_prompt)
counts["blank_rows_dropped"] = source.attrs.get("blank_rows", 0)
if not (table["split"] == "train").any():
    raise ValueError(f"dataset {snakemake.wildcards.dataset}: no prompt falls in the train split ({counts})")
log.info("dataset %s: %s", snakemake.wildcards.dataset, counts)
write_parquet(table, snakemake.output.prompts)
