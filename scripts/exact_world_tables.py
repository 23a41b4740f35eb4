"""Print the tables of docs/exact-world.md (Markdown) from the exact_world rule's Parquet table.

    snakemake --cores 1 results/exact/exact_world.parquet
    PYTHONPATH=src python scripts/exact_world_tables.py results/exact/exact_world.parquet

Tables: pi_n against the continuous values; per n, every trained configuration's distance to pi_n as
the pairs grow and where its infinite-data optimum lands; the fine-grained one-prompt worlds; and the
margin of pi_n as K grows (computed here, not read from the table).
"""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd

from bonbon.exact import _method, bon_margin, curve_win_rate
from bonbon.theory import beta_star, target_margin


def markdown(frame: pd.DataFrame) -> str:
    cells = [[v if isinstance(v, str) else "–" if pd.isna(v) else f"{v:.4g}" for v in row]
             for row in frame.itertuples(index=False)]
    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in cells])


def main(path: str) -> None:
    table = pd.read_parquet(path)
    world = table[table["world"] == "random"]
    bon = world[world["loss"] == "best_of_n"]
    print(markdown(pd.DataFrame({
        "n": bon["n"].astype(str), "win rate of π_n": bon["win_rate"], "n/(n+1)": bon["theory_win_rate"],
        "KL(π_n‖π_0)": bon["kl_from_reference"], "log n − (n−1)/n": bon["theory_kl"],
        "P(all n draws equal)": bon["tie_probability"], "margin of π_n, tie-free groups": bon["bon_margin"],
        "all groups": bon["bon_margin_all_groups"], "(n−1)H_{n−1}": bon["target_margin"]})))
    trained = world[~world["loss"].isin(["best_of_n", "best_of_n_no_tie"])].copy()
    trained["method"] = trained.apply(_method, axis=1)
    counts = sorted(c for c in trained["n_pairs"].unique() if c > 0)
    for n in sorted(trained["n"].unique()):
        rows = []
        b = world[(world["n"] == n) & (world["loss"] == "best_of_n")].iloc[0]
        rows.append({"method": "π_n itself", "win rate": b["win_rate"], "KL(π‖π_0)": b["kl_from_reference"],
                     "curve win rate at that KL": curve_win_rate(b["kl_from_reference"]),
                     "mean margin": b["bon_margin"]})
        group = trained[trained["n"] == n]
        for method in dict.fromkeys(group["method"]):
            rows_m = group[group["method"] == method].set_index("n_pairs")
            limit = rows_m.loc[-1]
            rows.append({"method": method,
                         **{f"KL(π_θ‖π_n), N={c}": rows_m.loc[c, "kl_reverse_to_bon"] for c in counts},
                         "N=∞": limit["kl_reverse_to_bon"], "KL(π_n‖π_θ), N=∞": limit["kl_to_bon"],
                         "win rate": limit["win_rate"], "KL(π‖π_0)": limit["kl_from_reference"],
                         "curve win rate at that KL": curve_win_rate(limit["kl_from_reference"]),
                         "mean margin": limit["mean_margin"]})
        frame = pd.DataFrame(rows)
        front = ["method", *[c for c in frame.columns if c.startswith("KL(π_θ") or c == "N=∞"]]
        print(f"\n**n = {n}** (β* = {beta_star(n):.4g}, target margin {target_margin(n):.4g}; "
              "win rate, KL(π‖π_0) and mean margin at N = ∞)\n")
        print(markdown(frame[front + [c for c in frame.columns if c not in front]]))
    fine = table[table["world"] != "random"]
    rows = []
    for (name, n), group in fine.groupby(["world", "n"], sort=False):
        for _, row in group.iterrows():
            rows.append({"world": name, "n": str(n),
                         "policy": "π_n" if row["loss"] == "best_of_n" else _method(row),
                         "KL(π‖π_n)": row["kl_reverse_to_bon"], "win rate": row["win_rate"],
                         "KL(π‖π_0)": row["kl_from_reference"],
                         "margin": row["bon_margin"] if row["loss"] == "best_of_n" else row["mean_margin"]})
    if rows:
        print("\n" + markdown(pd.DataFrame(rows)))
    rows = []
    for n in (2, 4, 8):
        for k in (16, 64, 256, 1024):
            p0, rewards = np.full(k, 1.0 / k), np.arange(k, dtype=float)
            margin = bon_margin(p0, rewards, n, "keep")
            rows.append({"n": str(n), "K": str(k), "margin of π_n, all groups": margin,
                         "tie-free groups": bon_margin(p0, rewards, n, "drop"),
                         "(n−1)H_{n−1}": target_margin(n),
                         "K × (target − margin)": k * (target_margin(n) - margin)})
    print("\n" + markdown(pd.DataFrame(rows)))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "results/exact/exact_world.parquet")
