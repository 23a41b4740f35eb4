"""Import a GGUF file into a plain model directory (weights, config, tokenizer, chat template)."""

from bonbon.warm import hand_over

hand_over(globals())  # the job runs in a warm worker (imports done) where one is up: bonbon.warm

import shutil
from pathlib import Path

from bonbon.gguf_import import import_gguf
from bonbon.jobs import setup_job

snakemake = globals()["snakemake"]
log, _ = setup_job(snakemake, model_job=True)
out = Path(snakemake.params.out)
partial = out.with_name(out.name + ".partial")  # a killed import leaves no directory that looks complete
shutil.rmtree(partial, ignore_errors=True)
summary = import_gguf(snakemake.input.gguf, partial)
shutil.rmtree(out, ignore_errors=True)
partial.rename(out)
log.info("%s: %s", out, summary)
