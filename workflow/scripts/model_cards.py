"""Model cards: README.md and the evaluation's sampling settings in generation_config.json for every
trained model and evaluated snapshot, from the summary's rows; cards.json lists what was written."""

from bonbon.warm import hand_over

hand_over(globals())  # the job runs in a warm worker (imports done) where one is up: bonbon.warm

import json
from pathlib import Path

from bonbon.cards import card_metadata, card_text, update_generation_config, write_card
from bonbon.jobs import setup_job
from bonbon.tables import read_table

snakemake = globals()["snakemake"]
log, _ = setup_job(snakemake)
p = snakemake.params
summary = read_table(snakemake.input.summary, ["policy", "run", "step"]).set_index("policy", drop=False)
written = {}
for policy, card in p.cards.items():
    if policy not in summary.index:
        raise ValueError(f"{snakemake.input.summary}: no row for policy {policy!r} to write its card from")
    row = summary.loc[policy].to_dict()
    run = card["run"]
    meta = card_metadata(policy, run, row, p.base_model, p.datasets[run["dataset"]])
    path = write_card(card["directory"], card_text(meta, p.provenance["command"], p.provenance["config"],
                                                   p.sampling))
    update_generation_config(card["directory"], p.sampling)
    written[policy] = str(path)
log.info("wrote %d model cards", len(written))
out = Path(snakemake.output.index)
out.write_text(json.dumps(written, indent=2, sort_keys=True) + "\n")
