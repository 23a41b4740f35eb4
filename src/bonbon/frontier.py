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


# The widest stretch of KL between two evaluated points across which a value "at matched KL" is read:
# max(MIN_BRACKET, the target KL) nats. A wider one is a straight line across a path never measured.
MIN_BRACKET = 0.5


def bracket_limit(target: float) -> float:
    """The widest KL bracket, max(0.5 nats, target), a reading at KL ``target`` may interpolate across."""
    return max(MIN_BRACKET, float(target))


def _bracket(path: pd.DataFrame, target: float) -> tuple[int | None, str | None]:
    """Where a path (rows in step order, reference first, every KL finite) is read at KL = ``target``.

    The first pair of consecutive points whose KLs bracket the target and differ by at most
    :func:`bracket_limit`: (the position of its second point in ``path``, None). Where there is none,
    (None, the reason), naming the steps and KLs of the first crossing that is too wide, or the
    largest KL the path reached. A path that falls back through the target after a too-wide first
    crossing is read where it falls back, if that bracket is narrow enough (its steps are reported)."""
    kls, steps = path["kl"].to_numpy(dtype=float), path["step"].to_numpy(dtype=float)
    limit, wide = bracket_limit(target), None
    for j in range(1, len(kls)):
        a, b = kls[j - 1], kls[j]
        if min(a, b) <= target <= max(a, b):
            if abs(b - a) <= limit:
                return j, None
            wide = wide or (steps[j - 1], a, steps[j], b)
    if wide:
        s0, a, s1, b = wide
        if s0 == 0:
            return None, (f"the first evaluated step ({s1:g}, KL {b:.3g}) is already past KL {target:.3g}, "
                          f"more than max({MIN_BRACKET}, {target:.3g}) nats from π_ref: evaluate earlier "
                          "checkpoints")
        return None, (f"bracket too wide: KL {a:.3g} (step {s0:g}) to {b:.3g} (step {s1:g}) spans "
                      f"{abs(b - a):.3g} nats > max({MIN_BRACKET}, {target:.3g}): evaluate checkpoints "
                      "between them")
    if len(kls) == 0:
        return None, "no evaluated point with a finite KL"
    top = int(np.argmax(kls))
    if kls[top] < target:
        return None, f"never reaches KL {target:.3g}: the largest is {kls[top]:.3g} (step {steps[top]:g})"
    return None, (f"the first evaluated point (step {steps[0]:g}, KL {kls[0]:.3g}) is already past "
                  f"KL {target:.3g}")


def _read_at(path: pd.DataFrame, j: int, target: float, column: str) -> tuple[float, float]:
    """``column`` (and the weight w of point j) at KL ``target``, linearly between rows j-1 and j."""
    a, b = float(path["kl"].iloc[j - 1]), float(path["kl"].iloc[j])
    w = 0.0 if a == b else (target - a) / (b - a)
    y0, y1 = float(path[column].iloc[j - 1]), float(path[column].iloc[j])
    return y0 + w * (y1 - y0), w


def matched_reading(path: pd.DataFrame, target: float) -> dict[str, float | str | None]:
    """A run's path read at KL = ``target``, only across a bracket of :func:`_bracket`.

    ``path``: the reference (step 0, KL 0) then the run's evaluated points in step order, with kl,
    win_rate, win_rate_se, mean_length. The win rate and length are linear in KL between the two
    bracketing points; the win rate's SE is (1-w) se_0 + w se_1, the largest the SE of that weighted
    mean can be whatever the two estimates' correlation (they share the reference's opponents), so
    it holds also where the points are not independent. Everything is NaN where there is no
    bracket, and ``matched_kl_reason`` says why (None where there is one).
    """
    path = path[np.isfinite(path["kl"].to_numpy(dtype=float))]
    j, reason = _bracket(path, target)
    if j is None:
        return {"win_rate_at_matched_kl": math.nan, "win_rate_at_matched_kl_se": math.nan,
                "length_at_matched_kl": math.nan, "bracket_from_step": math.nan, "bracket_to_step": math.nan,
                "bracket_kl_width": math.nan, "matched_kl_reason": reason}
    rate, w = _read_at(path, j, target, "win_rate")
    ses = path["win_rate_se"].to_numpy(dtype=float)
    steps, kls = path["step"].to_numpy(dtype=float), path["kl"].to_numpy(dtype=float)
    return {"win_rate_at_matched_kl": rate, "win_rate_at_matched_kl_se": (1 - w) * ses[j - 1] + w * ses[j],
            "length_at_matched_kl": _read_at(path, j, target, "mean_length")[0],
            "bracket_from_step": steps[j - 1], "bracket_to_step": steps[j],
            "bracket_kl_width": abs(kls[j] - kls[j - 1]), "matched_kl_reason": None}


def best_gap_within(path: pd.DataFrame, target: float) -> dict[str, float]:
    """The largest theory gap (``frontier_gap``, with SE and step) among a run's evaluated points whose
    KL is at most ``target``: the closest the run came to best-of-n without spending more KL than
    best-of-n does. NaN where no point is that close to the reference. The maximum of noisy
    estimates is biased upwards (more checkpoints, more chances); read it beside the matched-KL gap."""
    within = path[path["kl"].to_numpy(dtype=float) <= target]
    within = within[within["frontier_gap"].notna()]
    if within.empty:
        return {"best_gap_within_matched_kl": math.nan, "best_gap_within_matched_kl_se": math.nan,
                "best_gap_within_matched_kl_step": math.nan}
    best = within.loc[within["frontier_gap"].idxmax()]
    return {"best_gap_within_matched_kl": float(best["frontier_gap"]),
            "best_gap_within_matched_kl_se": float(best["frontier_gap_se"]),
            "best_gap_within_matched_kl_step": float(best["step"])}


def _path_from_reference(summary: pd.DataFrame, path: pd.DataFrame) -> pd.DataFrame:
    """The reference row of the run's dataset as step 0 (KL 0), then the run's points in step order."""
    columns = ["step", "kl", "win_rate", "win_rate_se", "mean_length"]
    path = path.sort_values("step")[columns]
    dataset = summary.loc[path.index[0], "dataset"]
    ref = summary[(summary["dataset"] == dataset) & (summary["kind"] == "reference")]
    if ref.empty:
        return path.astype(float)
    start = ref.iloc[:1][columns].assign(step=0.0, kl=0.0)
    return pd.concat([start, path]).astype(float)


def run_table(summary: pd.DataFrame) -> pd.DataFrame:
    """One row per trained run, over its trajectory of evaluated checkpoints (``run``, ``step``):

    * ``matched_kl`` = log n - (n-1)/n, best-of-n's KL at the run's n, and there, read along the path
      from the reference (KL 0) through the checkpoints in step order (:func:`matched_reading`: only
      where two consecutive evaluated points bracket it no more than max(0.5, matched_kl) nats apart,
      ``bracket_from_step``/``bracket_to_step``; else NaN and ``matched_kl_reason``):
      ``win_rate_at_matched_kl`` (SE), its gap to theory n/(n+1) (SE) and to the measured best-of-n
      win rate (SE, best-of-n's in quadrature), and ``length_at_matched_kl`` beside best-of-n's
      measured ``bon_n_length``;
    * ``best_gap_within_matched_kl`` (SE, step): :func:`best_gap_within`, the largest theory gap
      among the points that spent no more KL than best-of-n;
    * the final point's KL, win rate and gap (which reward spending KL: not a ranking).

    ``summary`` must carry :func:`add_frontier_columns`' columns.
    """
    trained = summary[summary["kind"] == "trained"]
    rows = []
    for run, points in trained.groupby("run", sort=False):
        points = points.sort_values("step")
        first, final = points.iloc[0], points.iloc[-1]
        dataset, n = first["dataset"], first["n"]
        row = {
            "run": run, "dataset": dataset, "loss": first["loss"], "n": n, "beta": first["beta"],
            "alpha": first["alpha"], "checkpoints": len(points), "final_step": final["step"],
            "final_kl": final["kl"], "final_win_rate": final["win_rate"],
            "final_frontier_gap": final["frontier_gap"],
        }
        if pd.notna(n):
            matched = float(bon_kl(float(n)))
            bon = summary[(summary["dataset"] == dataset) & (summary["kind"] == "best_of_n")
                          & (summary["n"] == n)]
            bon_rate = float(bon["win_rate"].iloc[0]) if len(bon) else math.nan
            bon_se = float(bon["win_rate_se"].iloc[0]) if len(bon) else math.nan
            reading = matched_reading(_path_from_reference(summary, points), matched)
            rate, se = reading.pop("win_rate_at_matched_kl"), reading.pop("win_rate_at_matched_kl_se")
            row.update(
                matched_kl=matched, win_rate_at_matched_kl=rate, win_rate_at_matched_kl_se=se,
                gap_at_matched_kl=rate - float(bon_win_rate(float(n))), gap_at_matched_kl_se=se,
                empirical_gap_at_matched_kl=rate - bon_rate,
                empirical_gap_at_matched_kl_se=math.hypot(se, bon_se),
                length_at_matched_kl=reading.pop("length_at_matched_kl"),
                bon_n_length=float(bon["mean_length"].iloc[0]) if len(bon) else math.nan,
                **reading, **best_gap_within(points, matched),
            )
        else:
            row["matched_kl_reason"] = ("no n: pairs not drawn by best-of-n (source original), "
                                        "no best-of-n KL to match")
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
