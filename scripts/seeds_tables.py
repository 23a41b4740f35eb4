"""Print the seeds table of a finished run as Markdown (the tables of docs/seeds.md) and the proxy-judge
agreement of docs/judge-proxy.md.

    python scripts/seeds_tables.py results

Reads results/eval/seeds.parquet (bonbon.aggregate.seed_table, written by the summary rule) and
results/eval/summary.parquet: for every grid point, each metric of its final models as
"mean ± seed SE (sampling SE)" over its seeds, then the runs table's metrics at best-of-n's KL the same
way, then every policy's proxy and judge win rates, their difference and the proxy-judge correlation.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

FINAL = ["win_rate", "judge_win_rate", "kl", "mean_length"]
PATH = ["win_rate_at_matched_kl", "judge_win_rate_at_matched_kl", "gap_at_matched_kl",
        "judge_gap_at_matched_kl"]


def cell(row: pd.Series) -> str:
    if pd.isna(row["mean"]):
        return "–"
    seed = "–" if pd.isna(row["seed_se"]) else f"{row['seed_se']:.3f}"
    sampling = "" if pd.isna(row["sampling_se"]) else f" ({row['sampling_se']:.3f})"
    return f"{row['mean']:.3f} ± {seed}{sampling}"


def wide(seeds: pd.DataFrame, metrics: list[str]) -> str:
    metrics = [m for m in metrics if m in set(seeds["metric"])]
    lines = ["| grid point | seeds | " + " | ".join(metrics) + " |", "|---|---|" + "---|" * len(metrics)]
    for base_run, part in seeds.groupby("base_run", sort=True):
        by_metric = {row["metric"]: row for _, row in part.iterrows()}
        cells = [cell(by_metric[m]) if m in by_metric else "–" for m in metrics]
        # the seeds the shown means are over (a seed not read at best-of-n's KL is in none of them)
        shown = {by_metric[m]["seeds"] for m in metrics if m in by_metric and by_metric[m]["n_seeds"]}
        if len(shown) <= 1:
            seeds_cell = shown.pop() if shown else "–"
        else:
            seeds_cell = "by metric: " + "; ".join(f"{m} {by_metric[m]['seeds']}" for m in metrics
                                                   if m in by_metric)
        lines.append(f"| {base_run} | {seeds_cell} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(results: Path) -> None:
    seeds = pd.read_parquet(results / "eval" / "seeds.parquet")
    summary = seeds[seeds["table"] == "summary"]
    last = summary.groupby("base_run")["step"].transform("max")
    print("Final models, mean ± SE across seeds (sampling SE):\n")
    print(wide(summary[summary["step"] == last], FINAL))
    print("\nAt best-of-n's KL (runs table), mean ± SE across seeds:\n")
    print(wide(seeds[seeds["table"] == "runs"], PATH))
    table = pd.read_parquet(results / "eval" / "summary.parquet")
    if "judge_win_rate" in table.columns:
        print("\nProxy against judge, every policy:\n")
        print("| policy | step | proxy win rate | judge win rate | judge − proxy | proxy–judge corr |\n"
              "|---|---|---|---|---|---|")
        for _, row in table.iterrows():
            step = "" if pd.isna(row["step"]) else int(row["step"])
            print(f"| {row['policy']} | {step} | {row['win_rate']:.3f} ± {row['win_rate_se']:.3f} | "
                  f"{row['judge_win_rate']:.3f} ± {row['judge_win_rate_se']:.3f} | "
                  f"{row['judge_win_rate'] - row['win_rate']:+.3f} | "
                  f"{row.get('proxy_judge_corr', float('nan')):.3f} |")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "results"))
