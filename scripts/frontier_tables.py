"""Print the frontier tables of a finished run as Markdown (the tables of docs/frontier.md).

    python scripts/frontier_tables.py results

Reads results/eval/summary.parquet and results/eval/runs.parquet: every policy point (best-of-n,
checkpoints, final models) with its win rate, KL, length and gaps to the best-of-n frontier, then one
row per run at best-of-n's KL for its n.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd


def _fmt(value: object, digits: int = 3) -> str:
    if isinstance(value, float):
        return "–" if pd.isna(value) else f"{value:.{digits}f}"
    return "–" if value is None or (not isinstance(value, str) and pd.isna(value)) else str(value)


COUNTS = {"n", "step", "best_gap_within_matched_kl_step", "final_step", "checkpoints", "bracket_from_step",
          "bracket_to_step"}


def markdown(frame: pd.DataFrame, columns: list[str]) -> str:
    rows = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in frame[columns].itertuples(index=False):
        cells = [_fmt(v, 0 if c in COUNTS else 3) for c, v in zip(columns, row, strict=True)]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main(results: Path) -> None:
    summary = pd.read_parquet(results / "eval" / "summary.parquet")
    runs = pd.read_parquet(results / "eval" / "runs.parquet")
    summary = summary.assign(step=summary["step"].astype("Int64").astype(object))
    points = ["policy", "step", "win_rate", "win_rate_se", "kl", "mean_length", "unfinished_share",
              "frontier_gap", "empirical_frontier_gap", "length_change", "bon_length"]
    judge = [c for c in ("judge_win_rate", "judge_frontier_gap") if c in summary.columns]
    print("## Every evaluated policy\n")
    print(markdown(summary, points + judge))
    at_matched = ["run", "n", "matched_kl", "bracket_from_step", "bracket_to_step", "win_rate_at_matched_kl",
                  "win_rate_at_matched_kl_se", "gap_at_matched_kl", "empirical_gap_at_matched_kl",
                  "length_at_matched_kl", "bon_n_length", "best_gap_within_matched_kl",
                  "best_gap_within_matched_kl_step", "final_kl", "final_win_rate"]
    print("\n## Each run at best-of-n's KL for its n\n")
    print(markdown(runs, at_matched + [c for c in runs.columns if c.startswith("judge_")]))
    empty = runs[runs["matched_kl_reason"].notna()] if "matched_kl_reason" in runs else runs.iloc[:0]
    if len(empty):
        print("\nNot read at best-of-n's KL:\n")
        for row in empty.itertuples(index=False):
            print(f"- {row.run}: {row.matched_kl_reason}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "results"))
