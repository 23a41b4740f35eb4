"""A dataset's own chosen/rejected pairs as a training source: HH dialogues, or a preference dataset in
one of TRL's layouts (bonbon.hub), checked up front (columns, empty responses, prompt lengths)."""

from bonbon.warm import hand_over

hand_over(globals())  # the job runs in a warm worker (imports done) where one is up: bonbon.warm

from bonbon.hub import is_trl, load_rows, preference_pairs
from bonbon.jobs import setup_job
from bonbon.sources import hh_pairs, load_hh
from bonbon.tables import write_parquet

snakemake = globals()["snakemake"]
log, _ = setup_job(snakemake)
dataset = snakemake.params.dataset
if is_trl(dataset):
    from bonbon.chat import has_chat_template, hh_to_messages, parse_messages, render_prompt
    from bonbon.models import load_tokenizer

    tokenizer = load_tokenizer(snakemake.params.tokenizer)
    chat = has_chat_template(tokenizer)

    def render(text, messages):
        """The prompt the policy continues: rendered with its chat template where it has one."""
        if not chat:
            return text
        return render_prompt(tokenizer, parse_messages(messages, "prompt") if messages
                             else hh_to_messages(text))

    def prompt_tokens(text):
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    frame, where = load_rows(dataset["path"], dataset.get("data_dir"), dataset["splits"]["train"])
    pairs = preference_pairs(frame, where, n=dataset.get("n"), render=render, prompt_tokens=prompt_tokens,
                             max_prompt_length=snakemake.params.max_prompt_length)
    if chat:  # a template's content is stripped; training appends the end-of-turn token
        pairs = pairs.assign(chosen=pairs["chosen"].str.strip(), rejected=pairs["rejected"].str.strip())
    counts = {"rows": len(frame), "pairs": len(pairs), "duplicate_prompt": len(frame) - len(pairs)}
else:
    frame = load_hh(dataset["path"], dataset["data_dir"], dataset["splits"]["train"])
    pairs, counts = hh_pairs(frame, source=dataset["path"])
if pairs.empty:
    raise ValueError(f"{dataset['path']}: no usable chosen/rejected pairs ({counts})")
log.info("%s: %s", dataset["path"], counts)
write_parquet(pairs, snakemake.output.pairs)
