"""Distance to the best-of-n frontier, against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from bonbon.frontier import (
    add_frontier_columns,
    bracket_limit,
    run_table,
    theory_n_at_kl,
    theory_win_rate_at_kl,
)
from bonbon.theory import bon_kl


@pytest.mark.parametrize("m", [1.0, 1.5, 2.0, 3.7, 8.0, 100.0, 1e4])
def test_theory_n_at_kl_inverts_bon_kl(m):
    assert theory_n_at_kl(bon_kl(m))[0] == pytest.approx(m, rel=1e-9)


def test_theory_win_rate_at_kl_known_points():
    # n = 2: KL log 2 - 1/2 = 0.1931, win rate 2/3; n = 8: 1.2044, 8/9; KL 0 (and below) is the reference
    kls = [math.log(2) - 0.5, math.log(8) - 7 / 8, 0.0, -0.3, math.nan]
    rates = theory_win_rate_at_kl(kls)
    np.testing.assert_allclose(rates[:4], [2 / 3, 8 / 9, 0.5, 0.5], rtol=1e-12)
    assert math.isnan(rates[4])


def _summary() -> pd.DataFrame:
    kl2, kl4 = math.log(2) - 0.5, math.log(4) - 0.75
    rows = [
        dict(policy="t-reference", kind="reference", n=None, kl=0.0, win_rate=0.5, win_rate_se=0.0,
             mean_length=30.0),
        dict(policy="t-bon-n2", kind="best_of_n", n=2, kl=kl2, win_rate=0.62, win_rate_se=0.02,
             mean_length=32.0),
        dict(policy="t-bon-n4", kind="best_of_n", n=4, kl=kl4, win_rate=0.78, win_rate_se=0.02,
             mean_length=35.0),
        # a trained point half-way between best-of-2 and best-of-4 in KL
        dict(policy="r@10", run="r", step=10, kind="trained", n=4, kl=(kl2 + kl4) / 2, win_rate=0.75,
             win_rate_se=0.03, mean_length=40.0),
        # its final point, far beyond best-of-4's KL (no empirical point to compare with)
        dict(policy="r", run="r", step=20, kind="trained", n=4, kl=2.0, win_rate=0.80, win_rate_se=0.03,
             mean_length=50.0),
    ]
    frame = pd.DataFrame(rows).assign(dataset="t",
                                      loss=lambda f: np.where(f["kind"] == "trained", "ipo", None),
                                      beta=None, alpha=None)
    return frame


def test_frontier_columns_by_hand():
    out = add_frontier_columns(_summary()).set_index("policy")
    mid = out.loc["r@10"]
    m = theory_n_at_kl(mid["kl"])[0]
    assert bon_kl(m) == pytest.approx(mid["kl"], abs=1e-12)
    assert mid["frontier_gap"] == pytest.approx(0.75 - m / (m + 1))
    assert mid["frontier_gap_se"] == 0.03
    # empirical: half-way between 0.62 and 0.78 in KL -> 0.70; SEs in quadrature
    assert mid["empirical_frontier_gap"] == pytest.approx(0.05)
    assert mid["empirical_frontier_gap_se"] == pytest.approx(math.hypot(0.03, 0.02))
    # length: +1/3 against the reference; best-of-n reaches 0.75 at 32 + (0.13 / 0.16) * 3 tokens
    assert mid["length_change"] == pytest.approx(1 / 3)
    assert mid["bon_length"] == pytest.approx(32 + 0.13 / 0.16 * 3)
    assert mid["length_excess"] == pytest.approx(40 - (32 + 0.13 / 0.16 * 3))
    # beyond the largest measured n and above its win rate: no extrapolation
    final = out.loc["r"]
    assert math.isnan(final["empirical_frontier_gap"]) and math.isnan(final["bon_length"])
    assert final["frontier_gap"] == pytest.approx(0.80 - theory_win_rate_at_kl(2.0)[0])
    # best-of-n itself sits on its own measured curve
    assert out.loc["t-bon-n2", "empirical_frontier_gap"] == pytest.approx(0.0)
    assert out.loc["t-bon-n2", "frontier_gap"] == pytest.approx(0.62 - 2 / 3)


def test_run_table_matched_kl_by_hand():
    summary = _summary()
    # 0.59 nats past step 10: within max(0.5, KL(4) = 0.636)
    summary.loc[summary["policy"] == "r", "kl"] = 1.0
    summary = add_frontier_columns(summary)
    table = run_table(summary).set_index("run")
    row = table.loc["r"]
    kl2, kl4 = math.log(2) - 0.5, math.log(4) - 0.75
    mid = (kl2 + kl4) / 2
    # the path reference (0, 0.5) -> step 10 (mid, 0.75) -> step 20 (1.0, 0.80) crosses KL(4) on its
    # second segment: 0.75 + (kl4 - mid) / (1 - mid) * 0.05
    w = (kl4 - mid) / (1.0 - mid)
    assert row["matched_kl"] == pytest.approx(kl4)
    assert row["win_rate_at_matched_kl"] == pytest.approx(0.75 + w * 0.05)
    assert row["gap_at_matched_kl"] == pytest.approx(0.75 + w * 0.05 - 0.8)
    assert row["empirical_gap_at_matched_kl"] == pytest.approx(0.75 + w * 0.05 - 0.78)
    assert row["length_at_matched_kl"] == pytest.approx(40 + w * 10)
    assert row["bon_n_length"] == 35.0
    assert row["checkpoints"] == 2 and row["final_step"] == 20
    # the bracket: steps 10 and 20, 1 - mid nats apart; no reason given
    assert (row["bracket_from_step"], row["bracket_to_step"]) == (10, 20)
    assert row["bracket_kl_width"] == pytest.approx(1.0 - mid)
    assert row["matched_kl_reason"] is None
    # SE: both points have 0.03, so any weighted mean's SE bound is 0.03; best-of-4's 0.02 in quadrature
    assert (row["win_rate_at_matched_kl_se"] == pytest.approx(0.03)
            and row["gap_at_matched_kl_se"] == pytest.approx(0.03))
    assert row["empirical_gap_at_matched_kl_se"] == pytest.approx(math.hypot(0.03, 0.02))
    # only step 10 spent no more KL than best-of-4: the final point (past it) does not count
    gaps = summary.set_index("policy")["frontier_gap"]
    assert row["best_gap_within_matched_kl"] == pytest.approx(gaps["r@10"])
    assert row["best_gap_within_matched_kl_step"] == 10


def _path(kls, rates=None, ses=None, n: int = 8) -> pd.Series:
    """The runs-table row of one run of n at these KLs (steps 1, 2, ...), beside the reference and
    best-of-n."""
    k = len(kls)
    rates = rates if rates is not None else list(np.linspace(0.6, 0.9, k))
    ses = ses if ses is not None else [0.02] * k
    rows = [dict(policy="t-reference", kind="reference", n=None, kl=0.0, win_rate=0.5, win_rate_se=0.01,
                 mean_length=30.0),
            dict(policy=f"t-bon-n{n}", kind="best_of_n", n=n, kl=bon_kl(n), win_rate=0.85, win_rate_se=0.02,
                 mean_length=40.0)]
    for i, (kl, rate, se) in enumerate(zip(kls, rates, ses, strict=True)):
        rows.append(dict(policy="r" if i == k - 1 else f"r-step{i + 1}", run="r", step=i + 1, kind="trained",
                         n=n, kl=kl, win_rate=rate, win_rate_se=se, mean_length=30.0 + 10 * i))
    frame = pd.DataFrame(rows).assign(dataset="t",
                                      loss=lambda f: np.where(f["kind"] == "trained", "ipo", None),
                                      beta=None, alpha=None)
    return run_table(add_frontier_columns(frame)).iloc[0]


def test_matched_kl_read_within_a_bracket_from_the_reference():
    # target KL(8) = 1.204; the limit is max(0.5, 1.204): pi_ref (KL 0) -> step 1 (1.1) -> step 2 (2.0)
    row = _path([1.1, 2.0], rates=[0.8, 0.9], ses=[0.02, 0.04])
    w = (bon_kl(8) - 1.1) / 0.9
    assert row["win_rate_at_matched_kl"] == pytest.approx(0.8 + w * 0.1)
    assert row["win_rate_at_matched_kl_se"] == pytest.approx((1 - w) * 0.02 + w * 0.04)
    assert row["length_at_matched_kl"] == pytest.approx(30 + w * 10)
    assert (row["bracket_from_step"], row["bracket_to_step"]) == (1, 2)
    # at n = 2 (KL 0.193, limit 0.5) a first checkpoint within 0.5 nats of pi_ref brackets from pi_ref itself
    row = _path([0.4, 3.0], rates=[0.8, 0.9], n=2)
    w = bon_kl(2) / 0.4
    assert row["win_rate_at_matched_kl"] == pytest.approx(0.5 + w * 0.3)
    assert row["win_rate_at_matched_kl_se"] == pytest.approx((1 - w) * 0.01 + w * 0.02)
    assert (row["bracket_from_step"], row["bracket_to_step"]) == (0, 1) and row["matched_kl_reason"] is None


def test_matched_kl_empty_where_the_bracket_is_too_wide():
    # step 1 at 0.5, step 2 at 1.8: 1.3 nats apart > 1.204: nothing measured near the target
    row = _path([0.5, 1.8])
    for column in ("win_rate_at_matched_kl", "gap_at_matched_kl", "empirical_gap_at_matched_kl",
                   "length_at_matched_kl", "win_rate_at_matched_kl_se", "bracket_from_step"):
        assert math.isnan(row[column]), column
    assert row["matched_kl_reason"].startswith("bracket too wide: KL 0.5 (step 1) to 1.8 (step 2) spans "
                                               "1.3 nats")
    # at n = 2 the limit is 0.5 nats (its KL is 0.193): a path 0.45 -> 0.9 is read only through 0.45
    assert _path([0.45, 0.9])["matched_kl_reason"] is not None  # n = 8's KL lies past 0.9: never reached
    assert bracket_limit(bon_kl(2)) == 0.5 and bracket_limit(bon_kl(8)) == pytest.approx(bon_kl(8))


def test_matched_kl_read_where_the_path_falls_back_through_the_target():
    # up past the target in one wide jump (0.2 -> 2.6), then back down through it: 1.7 -> 1.0 is narrow
    row = _path([0.2, 2.6, 1.7, 1.0], rates=[0.6, 0.95, 0.85, 0.8])
    w = (bon_kl(8) - 1.7) / (1.0 - 1.7)
    assert (row["bracket_from_step"], row["bracket_to_step"]) == (3, 4)
    assert row["win_rate_at_matched_kl"] == pytest.approx(0.85 + w * (0.8 - 0.85))
    assert row["bracket_kl_width"] == pytest.approx(0.7)
    # only the wide crossing: empty, and the reason names it
    row = _path([0.2, 2.6, 2.0])
    assert math.isnan(row["win_rate_at_matched_kl"])
    assert "KL 0.2 (step 1) to 2.6 (step 2)" in row["matched_kl_reason"]
    # best gap: the points at KL <= 1.204 are steps 1 (0.2) and 4 (1.0), whichever is closer to theory
    row = _path([0.2, 2.6, 1.7, 1.0], rates=[0.6, 0.99, 0.85, 0.8])
    gap = {kl: rate - theory_win_rate_at_kl(kl)[0] for kl, rate in ((0.2, 0.6), (1.0, 0.8))}
    assert row["best_gap_within_matched_kl"] == pytest.approx(max(gap.values()))
    assert row["best_gap_within_matched_kl_step"] == (1 if gap[0.2] > gap[1.0] else 4)


def test_matched_kl_empty_where_the_first_checkpoint_is_already_past_the_target():
    row = _path([4.3, 9.0, 20.0], rates=[0.9, 0.95, 0.99])
    assert math.isnan(row["win_rate_at_matched_kl"]) and math.isnan(row["gap_at_matched_kl"])
    assert row["matched_kl_reason"].startswith("the first evaluated step (1, KL 4.3) is already past KL 1.2")
    # and no point spent as little KL as best-of-8: no best gap either, however close to theory far out
    assert (math.isnan(row["best_gap_within_matched_kl"])
            and math.isnan(row["best_gap_within_matched_kl_step"]))


def test_best_gap_does_not_reward_spending_kl():
    # far out (KL 20) a win rate of 0.97 is only 0.03 under theory; at KL 1.0 a win rate of 0.75 is
    # further below: the old best-gap-anywhere would pick the far point, the new measure cannot
    row = _path([1.0, 20.0], rates=[0.75, 0.97])
    assert theory_win_rate_at_kl(20.0)[0] - 0.97 < theory_win_rate_at_kl(1.0)[0] - 0.75
    assert row["best_gap_within_matched_kl"] == pytest.approx(0.75 - theory_win_rate_at_kl(1.0)[0])
    assert row["best_gap_within_matched_kl_step"] == 1
    assert row["final_frontier_gap"] == pytest.approx(0.97 - theory_win_rate_at_kl(20.0)[0])


def test_run_table_path_that_never_reaches_matched_kl():
    summary = _summary()
    summary.loc[summary["kind"] == "trained", "kl"] = [0.1, 0.2]  # below best-of-4's KL of 0.636
    table = run_table(add_frontier_columns(summary))
    assert math.isnan(table["win_rate_at_matched_kl"].iloc[0])
    assert table["matched_kl_reason"].iloc[0] == "never reaches KL 0.636: the largest is 0.2 (step 20)"


def test_frontier_edges_of_the_measured_curve_and_non_monotone_win_rates():
    """The largest measured n is on its own curve (the range includes its end); best-of-n's length at a
    win rate reads the measured points sorted by win rate, also where the measured win rates are not
    monotone in n. Pins an open interval in the interpolation and the length read in KL order."""
    summary = _summary()
    kl8 = math.log(8) - 7 / 8
    extra = summary.iloc[[2]].assign(policy="t-bon-n8", n=8, kl=kl8, win_rate=0.85, mean_length=40.0)
    summary = pd.concat([summary, extra], ignore_index=True)
    summary.loc[summary["policy"] == "t-bon-n4", "win_rate"] = 0.60  # below best-of-2's 0.62
    out = add_frontier_columns(summary).set_index("policy")
    for policy in ("t-reference", "t-bon-n2", "t-bon-n4", "t-bon-n8"):
        assert out.loc[policy, "empirical_frontier_gap"] == pytest.approx(0.0), policy
    # by win rate: (0.5, 30) (0.60, 35) (0.62, 32) (0.85, 40); 0.75 lies between 0.62 and 0.85
    assert out.loc["r@10", "bon_length"] == pytest.approx(32 + (0.75 - 0.62) / (0.85 - 0.62) * 8)
    assert out.loc["r", "bon_length"] == pytest.approx(32 + (0.80 - 0.62) / (0.85 - 0.62) * 8)
    assert out.loc["t-bon-n4", "bon_length"] == pytest.approx(35.0)
    # empirical gap at the final point (KL 2.0, past best-of-8's 1.204): still no extrapolation
    assert math.isnan(out.loc["r", "empirical_frontier_gap"])
    # the reference's length change is 0; the theory gap SE is the policy's own
    assert out.loc["t-reference", "length_change"] == 0.0 and out.loc["r", "frontier_gap_se"] == 0.03



def test_kl_paths_suggests_the_bracket_and_a_snapshot_either_side():
    """perf/kl_paths.py's choice of checkpoints: the measured points around the crossing of the target
    KL plus one more on each side (never step 0, π_ref), including a dip before the first crossing."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "kl_paths", Path(__file__).resolve().parents[1] / "perf" / "kl_paths.py")
    kl_paths = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(kl_paths)
    path = [(0, 0.0), (2, 0.06), (4, 0.29), (6, 0.69), (8, 0.91), (10, 1.28), (12, 1.60), (14, 1.1)]
    assert kl_paths.steps_to_evaluate(path, 1.204) == [6, 8, 10, 12]
    assert kl_paths.steps_to_evaluate(path, 1.204, around=0) == [8, 10]
    assert kl_paths.steps_to_evaluate(path, 0.05) == [2, 4]  # before step 2: π_ref, not a checkpoint
    assert kl_paths.steps_to_evaluate(path, 1.7) == []  # never crosses
    # the first crossing counts, not a later one after a dip
    assert kl_paths.steps_to_evaluate([(0, 0.0), (4, 0.5), (8, 0.3), (12, 0.7)], 0.4, around=0) == [4]
