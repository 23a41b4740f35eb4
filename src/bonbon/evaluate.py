"""Evaluation of a policy against the reference: win rate, KL, rewards and lengths, as pure pandas
statistics of the sample tables (drawing and scoring the samples is :func:`bonbon.generate.sample_and_score`).

Sample layout on the eval prompts (``k`` = samples per prompt for every policy, ``M`` = opponents):

* every policy, trained or the reference, has samples ``0 … k-1`` per prompt;
* the *opponents* are M more reference samples per prompt, ``0 … M-1`` of their own random stream
  (``{dataset}-opponents``, drawn in blocks of sample indices like the generation's, so that raising
  M draws only the new blocks). Every policy sample j is compared with all M opponents of its prompt
  (:func:`pair_with_opponents`), ties ½; the win rate is the mean of these two-sample U-statistics
  and its SE is clustered by prompt (:func:`bonbon.metrics.win_rate_vs_opponents` derives it);
* the reference's own k samples are one more policy, a *fresh* reference draw against the opponents:
  its win rate is ½ in expectation, so its row is the *calibration* of every other row
  (:func:`calibration`), no longer a self-comparison;
* the reference's *candidates* ``k + p·k + j`` (position ``p``, replicate ``j < k``) are best-of-n's
  draws: best-of-n sample j is the best of positions ``0 … n-1`` of replicate j. The draws of
  best-of-n with n are indices ``k … k + k·n - 1`` whatever the largest n is, so adding an n adds
  positions (drawn in blocks of positions, :func:`candidate_samples`) and moves no estimate. Candidates
  come from the reference's stream and the opponents from theirs, so a best-of-n sample and its
  opponents are independent draws, as the win-rate definition requires.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

from bonbon.metrics import (
    bootstrap_ci,
    check_kl_sampling,
    kl_estimate,
    mean_se,
    summarize_lengths,
    win_scores_vs_opponents,
)
from bonbon.tables import JUDGE_SUMMARY_COLUMNS, SUMMARY_COLUMNS
from bonbon.theory import bon_kl


def candidate_samples(positions: tuple[int, int], k: int) -> tuple[int, int]:
    """The reference's sample indices [first, stop) of best-of-n candidate positions [a, b) (all k
    replicates)."""
    first, stop = positions
    return k + first * k, k + stop * k


def best_of_n_samples(candidates: pd.DataFrame, n: int, k: int) -> pd.DataFrame:
    """The best-of-n policy's samples: for each prompt and replicate j < k, the highest-reward draw among
    the candidates ``k + p·k + j``, p < n (the first drawn wins a tie); ``sample_idx`` becomes j."""
    if n < 1:
        raise ValueError(f"best-of-n needs n >= 1, got n={n}")
    offset = candidates["sample_idx"] - k
    position, replicate = offset // k, offset % k
    pool = candidates[(offset >= 0) & (position < n)].assign(replicate=replicate, position=position)
    sizes = pool.groupby(["prompt_id", "replicate"]).size()
    if len(sizes) == 0 or (sizes != n).any() or (sizes.groupby(level="prompt_id").size() != k).any():
        raise ValueError(f"the reference's candidates do not hold {k} replicates of {n} best-of-n draws "
                         "per prompt")
    order = pool.sort_values(["prompt_id", "replicate", "position"])
    best = pool.loc[order.groupby(["prompt_id", "replicate"])["reward"].idxmax()]
    return (best.assign(sample_idx=best["replicate"]).drop(columns=["replicate", "position"])
            .reset_index(drop=True))


def _opponents(opponents: pd.DataFrame, m: int, column: str, source: str) -> pd.DataFrame:
    """The first m opponents of every prompt (sample_idx < m) with ``column``; every prompt needs m."""
    table = opponents.loc[opponents["sample_idx"] < m, ["prompt_id", "sample_idx", column]]
    counts = table.groupby("prompt_id").size()
    if (counts != m).any():
        prompt = counts.index[counts != m][0]
        raise ValueError(f"{source}: prompt {prompt!r} has {counts[prompt]} reference opponents, not {m}")
    if table[column].isna().any():
        prompt = table.loc[table[column].isna(), "prompt_id"].iloc[0]
        raise ValueError(f"{source}: prompt {prompt!r} has an opponent without {column}")
    return table


def pair_with_opponents(policy: pd.DataFrame, opponents: pd.DataFrame, k: int, m: int,
                        source: str) -> pd.DataFrame:
    """Each policy sample j < k with its mean win (1, ½, 0 averaged) over the first m opponents of its
    prompt (``win``, :func:`bonbon.metrics.win_scores_vs_opponents`), and ``opponents`` = m."""
    table = policy[policy["sample_idx"] < k].reset_index(drop=True)
    if table.empty:
        raise ValueError(f"{source}: no samples to evaluate (zero rows)")
    pool = _opponents(opponents, m, "reward", source)
    missing = ~table["prompt_id"].isin(pool["prompt_id"])
    if missing.any():
        raise ValueError(f"{source}: prompt {table.loc[missing, 'prompt_id'].iloc[0]!r} has no reference "
                         "opponents")
    table["win"] = win_scores_vs_opponents(table["reward"], table["prompt_id"], pool["reward"],
                                           pool["prompt_id"])
    table["opponents"] = m
    return table


def add_judge_wins(table: pd.DataFrame, opponents: pd.DataFrame, m: int, source: str) -> pd.DataFrame:
    """``pair_with_opponents``' table with the judge's verdict beside the proxy's: ``judge_win``, the mean
    judge win (1, ½, 0) against the same m opponents, scored by the judge.

    Best-of-n rows keep the draw the *proxy* picked (that is what best-of-n does); only the verdict is the
    judge's."""
    if table["judge_reward"].isna().any():
        prompt = table.loc[table["judge_reward"].isna(), "prompt_id"].iloc[0]
        raise ValueError(f"{source}: prompt {prompt!r} has a sample without a judge reward")
    pool = _opponents(opponents, m, "judge_reward", source)
    out = table.copy()
    out["judge_win"] = win_scores_vs_opponents(out["judge_reward"], out["prompt_id"], pool["judge_reward"],
                                               pool["prompt_id"])
    return out


def summarize_judge(table: pd.DataFrame) -> dict:
    """:data:`JUDGE_SUMMARY_COLUMNS` of one policy's evaluation table (with :func:`add_judge_wins`'
    columns): the judge's win rate against the opponents with its prompt-clustered SE (which covers the
    opponents' variance, :func:`bonbon.metrics.win_rate_vs_opponents`) and 95% bootstrap interval over
    prompts."""
    groups = table["prompt_id"]
    rate, rate_se = mean_se(table["judge_win"], groups)
    low, high = bootstrap_ci(table["judge_win"], groups)
    return {"judge_win_rate": rate, "judge_win_rate_se": rate_se, "judge_win_rate_ci_low": low,
            "judge_win_rate_ci_high": high, "mean_judge_reward": float(table["judge_reward"].mean())}


def summarize(table: pd.DataFrame, policy: str, kind: str, *, dataset: str, loss: str | None = None,
              n: int | None = None, beta: float | None = None, alpha: float | None = None,
              sampling: dict | None = None, run: str | None = None, step: int | None = None) -> dict:
    """One summary row: win rate against the opponents (the mean of ``table["win"]``, each sample's mean
    over its prompt's M opponents) and KL with prompt-clustered standard errors and 95% bootstrap
    intervals over prompts, rewards and lengths. The prompt-clustered win-rate SE covers the policy
    draws, the shared opponents and the prompts (:func:`bonbon.metrics.win_rate_vs_opponents`).

    KL is the Monte-Carlo estimate for sampled policies (valid only at temperature 1 without top-k or
    top-p: otherwise it is NaN and ``kl_method`` says why), the analytic log n − (n−1)/n for best-of-n,
    and 0 for the reference itself.
    """
    groups = table["prompt_id"]
    rate, rate_se = mean_se(table["win"], groups)
    rate_ci = bootstrap_ci(table["win"], groups)
    if kind == "best_of_n":
        kl, kl_se, kl_ci, method = float(bon_kl(n)), math.nan, (math.nan, math.nan), "analytic"
    elif kind == "reference":
        kl, kl_se, kl_ci, method = 0.0, 0.0, (0.0, 0.0), "zero"
    else:
        problem = check_kl_sampling(**sampling) if sampling else None
        if problem:
            kl, kl_se, kl_ci, method = math.nan, math.nan, (math.nan, math.nan), f"invalid: {problem}"
        else:
            log_ratio = table["policy_logp"] - table["reference_logp"]
            kl, kl_se = kl_estimate(table["policy_logp"], table["reference_logp"], groups=groups)
            kl_ci, method = bootstrap_ci(log_ratio, groups), "monte_carlo"
    return {
        "policy": policy, "dataset": dataset, "kind": kind, "run": run, "step": step, "loss": loss, "n": n,
        "beta": beta, "alpha": alpha,
        "win_rate": rate, "win_rate_se": rate_se, "kl": kl, "kl_se": kl_se, "kl_method": method,
        "win_rate_ci_low": rate_ci[0], "win_rate_ci_high": rate_ci[1], "kl_ci_low": kl_ci[0],
        "kl_ci_high": kl_ci[1],
        "mean_reward": float(table["reward"].mean()),
        **summarize_lengths(table["n_tokens"], table["finished"]),
        "n_prompts": int(table["prompt_id"].nunique()), "n_samples": len(table),
        "n_opponents": int(table["opponents"].min()),
    }


# a calibration row further than this many SEs from ½ is reported as off (log, summary column, report)
CALIBRATION_LIMIT = 3.0


def _calibration_z(rate: float, se: float) -> float:
    """(rate − ½) / se; with se 0: 0 at ½ exactly and ±inf elsewhere; NaN where the SE is undefined."""
    if se == 0:
        return 0.0 if rate == 0.5 else math.copysign(math.inf, rate - 0.5)
    return (rate - 0.5) / se


def _calibration_text(rate: float, se: float, z: float) -> str:
    measured = f"{rate:.3f} ± {se:.3f} ({z:+.1f} SE from ½)"
    if math.isnan(z):
        return f"unmeasured: {measured}, the SE needs two prompts or more"
    if abs(z) > CALIBRATION_LIMIT:
        return (f"OFF: {measured}, more than {CALIBRATION_LIMIT:g} SE: the opponents are not a fair sample "
                f"of π_ref and every win rate of this dataset shares the offset")
    return f"ok: {measured}, within {CALIBRATION_LIMIT:g} SE"


def add_calibration(frame: pd.DataFrame) -> pd.DataFrame:
    """``calibration_z`` and ``calibration`` (and ``judge_calibration_z``, ``judge_calibration`` where the
    judge's columns are present) on each dataset's reference row: z = (win rate − ½) / SE of the
    reference's own k samples against the opponents, two independent draws of π_ref whose win rate is ½
    exactly (h(a, b) + h(b, a) = 1, ties included). The text says "ok", or "OFF" beyond
    :data:`CALIBRATION_LIMIT` SEs. Other rows: NaN / None."""
    out = frame.copy()
    for prefix in ("", "judge_"):
        if f"{prefix}win_rate" not in out.columns:
            continue
        z = pd.Series(math.nan, index=out.index)
        text = pd.Series(None, index=out.index, dtype=object)
        for i in out.index[out["kind"] == "reference"]:
            rate, se = float(out.at[i, f"{prefix}win_rate"]), float(out.at[i, f"{prefix}win_rate_se"])
            z[i] = _calibration_z(rate, se)
            text[i] = _calibration_text(rate, se, z[i])
        out[f"{prefix}calibration_z"], out[f"{prefix}calibration"] = z, text
    return out


def calibration_problems(summary: pd.DataFrame) -> list[str]:
    """One line per dataset and verdict (proxy, judge) whose calibration row is off (:func:`add_calibration`),
    for the log and the report."""
    problems = []
    for prefix, who in (("", "proxy"), ("judge_", "judge")):
        if f"{prefix}calibration" not in summary.columns:
            continue
        rows = summary[(summary["kind"] == "reference")
                       & summary[f"{prefix}calibration"].fillna("").str.startswith("OFF")]
        problems += [f"{row['dataset']} ({who}): the reference's own samples against the opponents: "
                     f"{row[f'{prefix}calibration']}" for _, row in rows.iterrows()]
    return problems


def summary_table(rows: Sequence[dict]) -> pd.DataFrame:
    """The rows in a fixed order: reference (the calibration row, :func:`add_calibration`), best-of-n by
    n, trained policies by loss, n, beta."""
    frame = add_calibration(pd.DataFrame(list(rows)))
    frame = frame[list(SUMMARY_COLUMNS) + [c for c in JUDGE_SUMMARY_COLUMNS if c in frame.columns]]
    kind_order = frame["kind"].map({"reference": 0, "best_of_n": 1, "trained": 2})
    frame = frame.assign(_k=kind_order).sort_values(["dataset", "_k", "loss", "n", "beta", "alpha", "run",
                                                     "step"], na_position="first")
    return frame.drop(columns="_k").reset_index(drop=True)
