"""Distance of every evaluated policy to the best-of-n frontier, in (KL, win rate) and (length, win rate).

The question the workflow is run for: does a trained policy reach best-of-n's win rate at best-of-n's
cost? Best-of-n theory gives a curve through (KL, win rate) = (log m - (m-1)/m, m/(m+1)), continuous
in m >= 1. For a policy point at KL k, the curve's win rate there is m(k)/(m(k)+1), m(k) solving
log m - (m-1)/m = k, and

    frontier_gap = win_rate - m(k) / (m(k) + 1)

(positive: above best-of-n, which theory says no policy at that KL should be when the reward is
continuous). The same is measured against the *empirical* best-of-n points (the reference at KL 0
and best-of-n for every n, KL analytic, win rate measured), interpolated linearly in KL between them
and not extrapolated past the largest n. Off target: ``length_change`` is the relative change in
mean length against the reference, and ``bon_length`` best-of-n's mean length at the policy's win
rate (interpolated between the measured best-of-n points). All functions are pure pandas/numpy.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import pandas as pd

from bonbon.tables import FRONTIER_COLUMNS, JUDGE_FRONTIER_COLUMNS, JUDGE_RUN_COLUMNS, JUDGE_SUMMARY_COLUMNS
from bonbon.theory import bon_kl, bon_win_rate

__all__ = ["add_frontier_columns", "add_judge_frontier_columns", "judge_run_table", "judge_view", "run_table",
           "theory_n_at_kl", "theory_win_rate_at_kl"]



def theory_n_at_kl(kl: npt.ArrayLike) -> np.ndarray:
    """The real m >= 1 with log m - (m-1)/m = kl (m = 1 for kl <= 0; NaN stays NaN).

    With t = log m the equation is t - 1 + exp(-t) = kl, increasing in t > 0, and t = kl + 1 already
    overshoots (kl + exp(-kl-1) > kl): bisection on [0, kl + 1] to float precision.
    """
    k = np.atleast_1d(np.asarray(kl, dtype=float))
    positive = np.where(np.isfinite(k), np.maximum(k, 0.0), 0.0)
    low, high = np.zeros_like(positive), positive + 1.0
    for _ in range(80):
        mid = 0.5 * (low + high)
        above = mid + np.expm1(-mid) > positive  # expm1: no cancellation near t = 0
        high = np.where(above, mid, high)
        low = np.where(above, low, mid)
    m = np.exp(0.5 * (low + high))
    return np.where(np.isnan(k), np.nan, np.where(positive == 0.0, 1.0, m))


def theory_win_rate_at_kl(kl: npt.ArrayLike) -> np.ndarray:
    """Best-of-n theory's win rate m/(m+1) at KL ``kl`` (0.5 at KL 0)."""
    m = theory_n_at_kl(kl)
    return m / (m + 1.0)


def _interp(x: float, xs: np.ndarray, ys: np.ndarray) -> float:
    """Linear interpolation of y at x on the points (xs, ys) sorted by xs; NaN outside their range."""
    if not math.isfinite(x) or len(xs) == 0 or x < xs[0] or x > xs[-1]:
        return math.nan
    return float(np.interp(x, xs, ys))


def _bon_points(summary: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """The measured best-of-n points of one dataset, with the reference as n = 1 at KL 0, by KL."""
    rows = summary[(summary["dataset"] == dataset) & summary["kind"].isin(["reference", "best_of_n"])]
    rows = rows.assign(n=np.where(rows["kind"] == "reference", 1, rows["n"]).astype(float))
    return rows.assign(kl=bon_kl(rows["n"].to_numpy())).sort_values("kl")


def add_frontier_columns(summary: pd.DataFrame) -> pd.DataFrame:
    """The summary with :data:`FRONTIER_COLUMNS` added to every row (see the module docstring).

    ``frontier_gap_se`` is the policy's win-rate SE (the curve is exact); the empirical gap's SE adds
    the interpolated best-of-n win-rate SE in quadrature (the two estimates are independent draws).
    ``length_excess`` = mean length - ``bon_length``. Reference and best-of-n rows get their own gaps
    (best-of-n's theory gap measures how far the discrete, finite-sample world is from theory).
    """
    out = summary.copy()
    out["frontier_gap"] = out["win_rate"] - theory_win_rate_at_kl(out["kl"].to_numpy(dtype=float))
    out["frontier_gap_se"] = out["win_rate_se"]
    for column in FRONTIER_COLUMNS[2:]:
        out[column] = math.nan
    for dataset in out["dataset"].unique():
        bon = _bon_points(out, dataset)
        kls, rates = bon["kl"].to_numpy(), bon["win_rate"].to_numpy(dtype=float)
        ses = np.nan_to_num(bon["win_rate_se"].to_numpy(dtype=float))
        by_rate = bon.sort_values("win_rate")
        reference = bon[bon["kind"] == "reference"]
        ref_length = float(reference["mean_length"].iloc[0]) if len(reference) else math.nan
        for i in out.index[out["dataset"] == dataset]:
            kl, rate = float(out.at[i, "kl"]), float(out.at[i, "win_rate"])
            gap = rate - _interp(kl, kls, rates)
            out.at[i, "empirical_frontier_gap"] = gap
            out.at[i, "empirical_frontier_gap_se"] = math.hypot(float(out.at[i, "win_rate_se"]),
                                                                _interp(kl, kls, ses))
            out.at[i, "length_change"] = float(out.at[i, "mean_length"]) / ref_length - 1.0
            bon_length = _interp(rate, by_rate["win_rate"].to_numpy(dtype=float),
                                 by_rate["mean_length"].to_numpy(dtype=float))
            out.at[i, "bon_length"] = bon_length
            out.at[i, "length_excess"] = float(out.at[i, "mean_length"]) - bon_length
    return out


def _crossing(path: pd.DataFrame, x: str, y: str, target: float) -> float:
    """y where the path (rows in step order) first reaches x = target, linearly between checkpoints.

    The path starts at the reference (x = 0 for KL); NaN when it never reaches the target."""
    xs, ys = path[x].to_numpy(dtype=float), path[y].to_numpy(dtype=float)
    for j in range(1, len(xs)):
        a, b = xs[j - 1], xs[j]
        if min(a, b) <= target <= max(a, b) and np.isfinite([a, b, ys[j - 1], ys[j]]).all():
            w = 0.0 if a == b else (target - a) / (b - a)
            return float(ys[j - 1] + w * (ys[j] - ys[j - 1]))
    return math.nan


def run_table(summary: pd.DataFrame) -> pd.DataFrame:
    """One row per trained run, over its trajectory of evaluated checkpoints (``run``, ``step``):

    * ``best_frontier_gap`` (and its ``best_step``, SE): the largest theory gap on the path;
    * ``matched_kl`` = log n - (n-1)/n, best-of-n's KL at the run's n, and at that KL, reached by
      linear interpolation along the path from the reference (KL 0) through the checkpoints in step
      order: ``win_rate_at_matched_kl``, its gap to theory n/(n+1) and to the measured best-of-n
      win rate, and ``length_at_matched_kl`` beside best-of-n's measured ``bon_n_length``;
      NaN where the path never reaches best-of-n's KL;
    * the final point's gap and KL.

    ``summary`` must carry :func:`add_frontier_columns`' columns.
    """
    trained = summary[summary["kind"] == "trained"]
    rows = []
    for run, path in trained.groupby("run", sort=False):
        path = path.sort_values("step")
        first = path.iloc[0]
        dataset, n = first["dataset"], first["n"]
        ref = summary[(summary["dataset"] == dataset) & (summary["kind"] == "reference")]
        start = ref[["kl", "win_rate", "mean_length"]].iloc[:1] if len(ref) else None
        full = pd.concat([start, path[["kl", "win_rate", "mean_length"]]]) if start is not None else path
        best = path.loc[path["frontier_gap"].idxmax()] if path["frontier_gap"].notna().any() else path.iloc[-1]
        final = path.iloc[-1]
        row = {
            "run": run, "dataset": dataset, "loss": first["loss"], "n": n, "beta": first["beta"],
            "alpha": first["alpha"], "checkpoints": len(path), "final_step": final["step"],
            "final_kl": final["kl"], "final_win_rate": final["win_rate"],
            "final_frontier_gap": final["frontier_gap"],
            "best_frontier_gap": best["frontier_gap"], "best_frontier_gap_se": best["frontier_gap_se"],
            "best_step": best["step"],
        }
        matched = math.nan
        if pd.notna(n):
            matched = float(bon_kl(float(n)))
            bon = summary[(summary["dataset"] == dataset) & (summary["kind"] == "best_of_n") & (summary["n"] == n)]
            rate = _crossing(full, "kl", "win_rate", matched)
            row.update(
                matched_kl=matched, win_rate_at_matched_kl=rate,
                gap_at_matched_kl=rate - float(bon_win_rate(float(n))),
                empirical_gap_at_matched_kl=rate - float(bon["win_rate"].iloc[0]) if len(bon) else math.nan,
                length_at_matched_kl=_crossing(full, "kl", "mean_length", matched),
                bon_n_length=float(bon["mean_length"].iloc[0]) if len(bon) else math.nan,
            )
        rows.append(row)
    return pd.DataFrame(rows)


# The judge's (models.judge) counterparts of the proxy's win-rate columns: the same functions on the
# summary with the judge's win rates in the proxy's columns (judge_view).


def judge_view(summary: pd.DataFrame) -> pd.DataFrame:
    """The summary with the judge's win rate (SE, interval, frontier gaps where present) in the proxy's
    columns, for the functions and figures that read ``win_rate``; unchanged without judge columns."""
    if "judge_win_rate" not in summary.columns:
        return summary
    out = summary.copy()
    for column in ("win_rate", "win_rate_se", "win_rate_ci_low", "win_rate_ci_high", *FRONTIER_COLUMNS[:4]):
        if f"judge_{column}" in summary.columns:
            out[column] = summary[f"judge_{column}"]
    return out


def add_judge_frontier_columns(summary: pd.DataFrame) -> pd.DataFrame:
    """:data:`JUDGE_FRONTIER_COLUMNS`: the frontier gaps of :func:`add_frontier_columns` measured with
    the judge's win rates (best-of-n's measured points judged by the judge too). The proxy's columns
    are left as they are, and first: every judge column goes after them."""
    if "judge_win_rate" not in summary.columns:
        return summary
    judged = add_frontier_columns(judge_view(summary))
    out = summary.copy()
    for column in JUDGE_FRONTIER_COLUMNS:
        out[column] = judged[column.removeprefix("judge_")]
    judge = [c for c in (*JUDGE_SUMMARY_COLUMNS, *JUDGE_FRONTIER_COLUMNS) if c in out.columns]
    return out[[c for c in out.columns if c not in judge] + judge]


def judge_run_table(summary: pd.DataFrame) -> pd.DataFrame:
    """``run`` and :func:`run_table`'s win-rate columns measured with the judge, prefixed ``judge_``
    (``summary`` must carry :func:`add_judge_frontier_columns`' columns)."""
    runs = run_table(judge_view(summary))
    if runs.empty:
        return pd.DataFrame(columns=["run", *JUDGE_RUN_COLUMNS])
    keep = [c.removeprefix("judge_") for c in JUDGE_RUN_COLUMNS if c.removeprefix("judge_") in runs.columns]
    return runs[["run", *keep]].rename(columns={c: f"judge_{c}" for c in keep})
