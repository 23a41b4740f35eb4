"""A pair file and its reference log-probs as a TRL preference dataset (bonbon.export)."""

from bonbon.warm import hand_over

hand_over(globals())  # the job runs in a warm worker (imports done) where one is up: bonbon.warm

from bonbon.export import to_trl, write_trl
from bonbon.jobs import setup_job
from bonbon.tables import PAIR_TEXT_COLUMNS, PROMPT_COLUMNS, REF_COLUMNS, read_table

snakemake = globals()["snakemake"]
log, _ = setup_job(snakemake)
pairs = read_table(snakemake.input.pairs, PAIR_TEXT_COLUMNS, allow_empty=True)
ref = read_table(snakemake.input.ref_logps, REF_COLUMNS, allow_empty=True)
prompts = read_table(snakemake.input.prompts, PROMPT_COLUMNS)
rows, counts = to_trl(pairs, ref, prompts)
log.info("%s: %s", snakemake.input.pairs, counts)
write_trl(rows, snakemake.output.folder, snakemake.output.parquet, snakemake.output.jsonl)
