"""The summary table (one row per policy, with its distance to the best-of-n frontier) and the runs
table (one row per trained run, over its trajectory of checkpoints)."""

from bonbon.warm import hand_over

hand_over(globals())  # the job runs in a warm worker (imports done) where one is up: bonbon.warm

from pathlib import Path

import pandas as pd

from bonbon.aggregate import RUN_SEED_METRICS, SUMMARY_SEED_METRICS, reward_agreement, seed_table
from bonbon.evaluate import calibration_problems, summarize, summarize_judge, summary_table
from bonbon.frontier import add_frontier_columns, add_judge_frontier_columns, judge_run_table, run_table
from bonbon.jobs import setup_job
from bonbon.tables import read_table, write_parquet

snakemake = globals()["snakemake"]
log, _ = setup_job(snakemake)
p = snakemake.params
rows, agreement = [], {}
for path in snakemake.input.tables:
    name = Path(path).stem
    spec = p.policies[name]
    table = read_table(path, ["prompt_id", "reward", "win", "opponents", "n_tokens", "finished",
                              "judge_reward", "judge_win"])
    row = summarize(table, name, spec["kind"], dataset=spec["dataset"], loss=spec.get("loss"),
                    n=spec.get("n"), beta=spec.get("beta"), alpha=spec.get("alpha"),
                    sampling=p.sampling, run=spec.get("run"), step=spec.get("step"))
    rows.append({**row, **summarize_judge(table)})
    agreement[name] = reward_agreement(table)
# the judge's columns come after every proxy column, which stay as they were without a judge
summary = add_judge_frontier_columns(add_frontier_columns(summary_table(rows)))
# proxy-judge agreement
summary = summary.join(pd.DataFrame.from_dict(agreement, orient="index"), on="policy")
# the reference's fresh draws against the opponents: ½ within its SE, or every win rate is off
problems = calibration_problems(summary)
for line in problems:
    log.warning("calibration off: %s", line)
for _, row in summary[summary["kind"] == "reference"].iterrows():
    log.info("calibration %s: proxy %s; judge %s", row["dataset"], row["calibration"],
             row.get("judge_calibration"))
runs = run_table(summary)
runs = runs.merge(judge_run_table(summary), on="run", how="left") if len(runs) else runs
log.info("summary:\n%s", summary.to_string())
log.info("runs:\n%s", runs.to_string())
for row in (runs[runs["matched_kl_reason"].notna()].itertuples(index=False) if "matched_kl_reason" in runs
            else []):
    log.warning("run %s has no value at best-of-n's KL: %s", row.run, row.matched_kl_reason)
write_parquet(summary, snakemake.output.parquet)
summary.to_csv(snakemake.output.csv, index=False)
html = {"float_format": lambda v: f"{v:.4g}", "na_rep": "–", "index": False}
lines = [f"<p><b>Calibration</b> (the reference's own samples against the {int(row['n_opponents'])} "
         f"opponents per prompt, ½ in expectation), {row['dataset']}: proxy {row['calibration']}"
         + (f"; judge {row['judge_calibration']}" if "judge_calibration" in summary.columns else "") + "</p>"
         for _, row in summary[summary["kind"] == "reference"].iterrows()]
lines += [f"<p><b>Warning: calibration off.</b> {line}</p>" for line in problems]
Path(snakemake.output.html).write_text("\n".join(lines) + "\n" + summary.to_html(**html))
write_parquet(runs, snakemake.output.runs_parquet)
Path(snakemake.output.runs).write_text(runs.to_html(**html))
# every trained run's grid point over its seeds (training.seed a list; one seed: n_seeds 1, no seed SE)
seeds = pd.concat([seed_table(summary, p.replicates, SUMMARY_SEED_METRICS, keys=["step"]),
                   seed_table(runs, p.replicates, RUN_SEED_METRICS, name="runs")], ignore_index=True)
log.info("seeds:\n%s", seeds.to_string())
write_parquet(seeds, snakemake.output.seeds_parquet)
Path(snakemake.output.seeds).write_text(seeds.to_html(**html))
