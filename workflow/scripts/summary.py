"""The summary table: one row per policy."""

from pathlib import Path

from bonbon.evaluate import summarize, summary_table
from bonbon.io import read_table, setup_job_logging, write_parquet
from bonbon.theory import beta_star

snakemake = globals()["snakemake"]
log = setup_job_logging(snakemake.log[0])
p = snakemake.params
rows = []
for path in snakemake.input.tables:
    name = Path(path).stem
    spec = p.policies[name]
    table = read_table(path, ["prompt_id", "reward", "opponent_reward", "n_tokens", "finished"])
    beta = spec.get("beta")
    rows.append(summarize(table, name, spec["kind"], dataset=spec["dataset"], loss=spec.get("loss"), n=spec.get("n"),
                          beta=beta_star(spec["n"]) if beta == "auto" else beta, alpha=spec.get("alpha"),
                          sampling=p.sampling))
summary = summary_table(rows)
log.info("summary:\n%s", summary.to_string())
write_parquet(summary, snakemake.output.parquet)
summary.to_csv(snakemake.output.csv, index=False)
Path(snakemake.output.html).write_text(summary.to_html(index=False, float_format=lambda v: f"{v:.4g}", na_rep="–"))
