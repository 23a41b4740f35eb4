"""The summary table (one row per policy, with its distance to the best-of-n frontier) and the runs
table (one row per trained run, over its trajectory of checkpoints)."""

from pathlib import Path

from bonbon.evaluate import summarize, summary_table
from bonbon.frontier import add_frontier_columns, run_table
from bonbon.jobs import setup_job
from bonbon.tables import read_table, write_parquet

snakemake = globals()["snakemake"]
log, _ = setup_job(snakemake)
p = snakemake.params
rows = []
for path in snakemake.input.tables:
    name = Path(path).stem
    spec = p.policies[name]
    table = read_table(path, ["prompt_id", "reward", "opponent_reward", "n_tokens", "finished"])
    rows.append(summarize(table, name, spec["kind"], dataset=spec["dataset"], loss=spec.get("loss"), n=spec.get("n"),
                          beta=spec.get("beta"), alpha=spec.get("alpha"),
                          sampling=p.sampling, run=spec.get("run"), step=spec.get("step")))
summary = add_frontier_columns(summary_table(rows))
runs = run_table(summary)
log.info("summary:\n%s", summary.to_string())
log.info("runs:\n%s", runs.to_string())
write_parquet(summary, snakemake.output.parquet)
summary.to_csv(snakemake.output.csv, index=False)
html = {"float_format": lambda v: f"{v:.4g}", "na_rep": "–", "index": False}
Path(snakemake.output.html).write_text(summary.to_html(**html))
write_parquet(runs, snakemake.output.runs_parquet)
Path(snakemake.output.runs).write_text(runs.to_html(**html))
