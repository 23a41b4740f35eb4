"""Evaluation of a policy against the reference: win rate, KL, rewards and lengths, as pure pandas
statistics of the sample tables (drawing and scoring the samples is :func:`bonbon.generate.sample_and_score`).

Sample layout on the eval prompts (``k`` = samples per prompt for every policy):

* every policy, trained or the reference, has samples ``0 … k-1`` per prompt;
* the reference has more: sample ``j < k`` is the *opponent* of every policy's sample ``j``, and the
  draws ``k + j·N … k + j·N + N - 1`` (N = max n) form block ``j``, from which the best-of-n policy
  takes the best of the first n. Blocks never overlap the opponents, so a best-of-n sample and its
  opponent are independent draws, as the win-rate definition requires.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

from bonbon.metrics import (
    bootstrap_ci,
    check_kl_sampling,
    kl_estimate,
    summarize_lengths,
    win_rate,
    win_scores,
)
from bonbon.tables import JUDGE_SUMMARY_COLUMNS, SUMMARY_COLUMNS
from bonbon.theory import bon_kl


def reference_samples_needed(k: int, n_max: int) -> int:
    """Reference samples per eval prompt: k opponents and k blocks of n_max best-of-n draws."""
    return k + k * n_max


def best_of_n(reference: pd.DataFrame, n: int, k: int, n_max: int) -> pd.DataFrame:
    """The best-of-n policy's samples: for each prompt and j < k, the highest-reward draw among the first
    n of block j (reference sample indices ``k + j·n_max …``); ``sample_idx`` becomes j."""
    if not 1 <= n <= n_max:
        raise ValueError(f"n={n} outside 1..{n_max}")
    offset = reference["sample_idx"] - k
    block, position = offset // n_max, offset % n_max
    pool = reference[(offset >= 0) & (block < k) & (position < n)].assign(block=block)
    sizes = pool.groupby(["prompt_id", "block"]).size()
    if len(sizes) == 0 or (sizes != n).any():
        raise ValueError(f"reference samples do not hold {k} blocks of {n} best-of-n draws per prompt")
    best = pool.loc[pool.sort_values(["prompt_id", "block", "sample_idx"]).groupby(["prompt_id", "block"])["reward"].idxmax()]
    return best.assign(sample_idx=best["block"]).drop(columns="block").reset_index(drop=True)


def pair_with_opponents(policy: pd.DataFrame, reference: pd.DataFrame, k: int, source: str) -> pd.DataFrame:
    """Each policy sample j < k beside reference sample j of the same prompt, with its win (1, ½, 0)."""
    opponents = reference.loc[reference["sample_idx"] < k, ["prompt_id", "sample_idx", "reward"]]
    table = policy[policy["sample_idx"] < k].merge(
        opponents.rename(columns={"reward": "opponent_reward"}), on=["prompt_id", "sample_idx"], how="left"
    )
    if table.empty:
        raise ValueError(f"{source}: no samples to evaluate (zero rows)")
    if table["opponent_reward"].isna().any():
        missing = table.loc[table["opponent_reward"].isna(), "prompt_id"].iloc[0]
        raise ValueError(f"{source}: prompt {missing!r} has no reference sample to compare with")
    table["win"] = win_scores(table["reward"], table["opponent_reward"])
    return table


def add_judge_wins(table: pd.DataFrame, reference: pd.DataFrame, k: int, source: str) -> pd.DataFrame:
    """``pair_with_opponents``' table with the judge's verdict beside the proxy's: ``opponent_judge_reward``
    (the judge's score of the same reference opponent j) and ``judge_win`` (1, ½, 0).

    Best-of-n rows keep the draw the *proxy* picked (that is what best-of-n does); only the verdict is the
    judge's."""
    opponents = reference.loc[reference["sample_idx"] < k, ["prompt_id", "sample_idx", "judge_reward"]]
    out = table.merge(opponents.rename(columns={"judge_reward": "opponent_judge_reward"}),
                      on=["prompt_id", "sample_idx"], how="left")
    if out["opponent_judge_reward"].isna().any() or out["judge_reward"].isna().any():
        missing = out.loc[out["opponent_judge_reward"].isna() | out["judge_reward"].isna(), "prompt_id"].iloc[0]
        raise ValueError(f"{source}: prompt {missing!r} has a sample or opponent without a judge reward")
    out["judge_win"] = win_scores(out["judge_reward"], out["opponent_judge_reward"])
    return out


def summarize_judge(table: pd.DataFrame) -> dict:
    """:data:`JUDGE_SUMMARY_COLUMNS` of one policy's evaluation table (with :func:`add_judge_wins`'
    columns): the judge's win rate with its prompt-clustered SE and 95% bootstrap interval over prompts."""
    groups = table["prompt_id"]
    rate, rate_se = win_rate(table["judge_reward"], table["opponent_judge_reward"], groups=groups)
    low, high = bootstrap_ci(win_scores(table["judge_reward"], table["opponent_judge_reward"]), groups)
    return {"judge_win_rate": rate, "judge_win_rate_se": rate_se, "judge_win_rate_ci_low": low,
            "judge_win_rate_ci_high": high, "mean_judge_reward": float(table["judge_reward"].mean())}


def summarize(table: pd.DataFrame, policy: str, kind: str, *, dataset: str, loss: str | None = None,
              n: int | None = None, beta: float | None = None, alpha: float | None = None,
              sampling: dict | None = None, run: str | None = None, step: int | None = None) -> dict:
    """One summary row: win rate and KL with prompt-clustered standard errors and 95% bootstrap
    intervals over prompts, rewards and lengths.

    KL is the Monte-Carlo estimate for sampled policies (valid only at temperature 1 without top-k or
    top-p: otherwise it is NaN and ``kl_method`` says why), the analytic log n − (n−1)/n for best-of-n,
    and 0 for the reference itself.
    """
    groups = table["prompt_id"]
    rate, rate_se = win_rate(table["reward"], table["opponent_reward"], groups=groups)
    rate_ci = bootstrap_ci(win_scores(table["reward"], table["opponent_reward"]), groups)
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
        "policy": policy, "dataset": dataset, "kind": kind, "run": run, "step": step, "loss": loss, "n": n, "beta": beta, "alpha": alpha,
        "win_rate": rate, "win_rate_se": rate_se, "kl": kl, "kl_se": kl_se, "kl_method": method,
        "win_rate_ci_low": rate_ci[0], "win_rate_ci_high": rate_ci[1], "kl_ci_low": kl_ci[0], "kl_ci_high": kl_ci[1],
        "mean_reward": float(table["reward"].mean()),
        **summarize_lengths(table["n_tokens"], table["finished"]),
        "n_prompts": int(table["prompt_id"].nunique()), "n_samples": len(table),
    }


def summary_table(rows: Sequence[dict]) -> pd.DataFrame:
    """The rows in a fixed order: reference, best-of-n by n, trained policies by loss, n, beta."""
    frame = pd.DataFrame(list(rows))
    frame = frame[list(SUMMARY_COLUMNS) + [c for c in JUDGE_SUMMARY_COLUMNS if c in frame.columns]]
    kind_order = frame["kind"].map({"reference": 0, "best_of_n": 1, "trained": 2})
    frame = frame.assign(_k=kind_order).sort_values(["dataset", "_k", "loss", "n", "beta", "alpha", "run", "step"],
                                                    na_position="first")
    return frame.drop(columns="_k").reset_index(drop=True)
