"""Aggregates over the summary and runs tables: the agreement of the proxy and the judge on a policy's
samples, and the mean over training seeds with its standard error across seeds beside the sampling SE.
Pure pandas/numpy.

Seeds. Run s of S seeds of one grid point gives an estimate x_s (a win rate, say) with a sampling SE
se_s (from its finite evaluation samples). The seeds' mean x̄ = Σ x_s / S has

* ``seed_se`` = sd(x_1 … x_S) / √S (ddof 1): the SE of x̄ as the seeds show it, which holds the
  training variance (seed to seed) *and* each run's sampling noise;
* ``sampling_se`` = √(Σ se_s²) / S: what the SE of x̄ would be from sampling alone (the seeds' samples are
  independent draws), for comparison. ``seed_se`` well above ``sampling_se`` means training variance
  dominates; with one seed ``seed_se`` is NaN (unknown, not 0).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

# what a seeds row says about its grid point, taken from its first replicate
GRID_COLUMNS = ("dataset", "loss", "n", "beta", "alpha")
# the metrics the seeds table averages, where the table has them (a metric's SE is its {metric}_se column)
SUMMARY_SEED_METRICS = ("win_rate", "judge_win_rate", "kl", "frontier_gap", "judge_frontier_gap",
                        "mean_length", "proxy_judge_corr")
RUN_SEED_METRICS = ("final_win_rate", "judge_final_win_rate", "final_kl", "final_frontier_gap",
                    "win_rate_at_matched_kl", "judge_win_rate_at_matched_kl", "gap_at_matched_kl",
                    "judge_gap_at_matched_kl")
SEED_COLUMNS = ("table", "base_run", *GRID_COLUMNS, "step", "metric", "n_seeds", "seeds", "mean", "seed_se",
                "sampling_se", "seed_sd")


def reward_agreement(table: pd.DataFrame) -> dict[str, float]:
    """How far the judge agrees with the proxy on one policy's samples: the Pearson (``proxy_judge_corr``)
    and Spearman (``proxy_judge_rank_corr``) correlations of ``reward`` and ``judge_reward``. NaN where
    either is constant (as with fewer than two samples)."""
    proxy, judge = table["reward"].astype(float), table["judge_reward"].astype(float)
    if len(table) < 2 or proxy.std() == 0 or judge.std() == 0:
        return {"proxy_judge_corr": math.nan, "proxy_judge_rank_corr": math.nan}
    return {"proxy_judge_corr": float(np.corrcoef(proxy, judge)[0, 1]),
            "proxy_judge_rank_corr": float(np.corrcoef(proxy.rank(), judge.rank())[0, 1])}


def seed_table(table: pd.DataFrame, replicates: Mapping[str, Mapping], metrics: Sequence[str],
               keys: Sequence[str] = (), name: str = "summary") -> pd.DataFrame:
    """One row per (grid point, ``keys``, metric) of ``table``'s runs: the mean of the metric over the
    seeds, ``seed_se``, ``sampling_se`` (from the ``{metric}_se`` column; NaN without one) and ``seed_sd``
    (module docstring), ``n_seeds`` and ``seeds``.

    ``table`` has a ``run`` column (rows of other runs, or none, are left out); ``replicates`` maps a
    run to its ``base_run`` (the grid point's name) and ``seed`` (:func:`bonbon.runs.replicates`);
    ``keys`` split a grid point further (``step``: each evaluated checkpoint apart); metrics missing
    from ``table`` are skipped. Raises ValueError when a grid point has a seed twice at one key.
    """
    rows = table[table["run"].isin(list(replicates))] if "run" in table.columns else table.iloc[0:0]
    rows = rows.assign(base_run=rows["run"].map(lambda r: replicates[r]["base_run"]),
                       seed=rows["run"].map(lambda r: replicates[r]["seed"]))
    out = []
    present = [m for m in metrics if m in rows.columns]
    for group, part in rows.groupby(["base_run", *keys], sort=True, dropna=False):
        if part["seed"].duplicated().any():
            raise ValueError(f"{name} table: run {group[0]!r} has seed "
                             f"{part['seed'][part['seed'].duplicated()].iloc[0]} "
                             f"twice at {dict(zip(keys, group[1:], strict=True))}")
        first = part.iloc[0]
        where = {"table": name, "base_run": group[0], **{c: first.get(c) for c in GRID_COLUMNS},
                 "step": first["step"] if "step" in keys else None}
        for metric in present:
            values = part[metric].astype(float).to_numpy()
            se = part[f"{metric}_se"].astype(float).to_numpy() if f"{metric}_se" in part.columns else None
            # the seeds the mean is over: a seed without a value (a run never read at best-of-n's KL) is not
            out.append({**where, "metric": metric, **_over_seeds(values, se),
                        "seeds": ",".join(str(s) for s in sorted(part["seed"][np.isfinite(values)]))})
    return pd.DataFrame(out, columns=list(SEED_COLUMNS))


def _over_seeds(values: np.ndarray, se: np.ndarray | None) -> dict[str, float]:
    """mean, seed_se, sampling_se and seed_sd of one metric's per-seed values (NaN values left out)."""
    keep = np.isfinite(values)
    values = values[keep]
    count = len(values)
    sd = float(np.std(values, ddof=1)) if count > 1 else math.nan
    sampling = float(np.sqrt(np.sum(se[keep] ** 2)) / count) if se is not None and count else math.nan
    return {"n_seeds": count, "mean": float(values.mean()) if count else math.nan,
            "seed_se": sd / math.sqrt(count) if count > 1 else math.nan, "sampling_se": sampling,
            "seed_sd": sd}
