"""Distance to the best-of-n frontier, against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from bonbon.frontier import add_frontier_columns, run_table, theory_n_at_kl, theory_win_rate_at_kl
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
        dict(policy="t-reference", kind="reference", n=None, kl=0.0, win_rate=0.5, win_rate_se=0.0, mean_length=30.0),
        dict(policy="t-bon-n2", kind="best_of_n", n=2, kl=kl2, win_rate=0.62, win_rate_se=0.02, mean_length=32.0),
        dict(policy="t-bon-n4", kind="best_of_n", n=4, kl=kl4, win_rate=0.78, win_rate_se=0.02, mean_length=35.0),
        # a trained point half-way between best-of-2 and best-of-4 in KL
        dict(policy="r@10", run="r", step=10, kind="trained", n=4, kl=(kl2 + kl4) / 2, win_rate=0.75,
             win_rate_se=0.03, mean_length=40.0),
        # its final point, far beyond best-of-4's KL (no empirical point to compare with)
        dict(policy="r", run="r", step=20, kind="trained", n=4, kl=2.0, win_rate=0.80, win_rate_se=0.03,
             mean_length=50.0),
    ]
    frame = pd.DataFrame(rows).assign(dataset="t", loss=lambda f: np.where(f["kind"] == "trained", "ipo", None),
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
    summary = add_frontier_columns(_summary())
    table = run_table(summary).set_index("run")
    row = table.loc["r"]
    kl2, kl4 = math.log(2) - 0.5, math.log(4) - 0.75
    mid = (kl2 + kl4) / 2
    # the path reference (0, 0.5) -> step 10 (mid, 0.75) -> step 20 (2.0, 0.80) crosses KL(4) on its
    # second segment: 0.75 + (kl4 - mid) / (2 - mid) * 0.05
    w = (kl4 - mid) / (2.0 - mid)
    assert row["matched_kl"] == pytest.approx(kl4)
    assert row["win_rate_at_matched_kl"] == pytest.approx(0.75 + w * 0.05)
    assert row["gap_at_matched_kl"] == pytest.approx(0.75 + w * 0.05 - 0.8)
    assert row["empirical_gap_at_matched_kl"] == pytest.approx(0.75 + w * 0.05 - 0.78)
    assert row["length_at_matched_kl"] == pytest.approx(40 + w * 10)
    assert row["bon_n_length"] == 35.0
    assert row["checkpoints"] == 2 and row["final_step"] == 20
    gaps = summary.set_index("policy")["frontier_gap"]
    assert row["best_frontier_gap"] == pytest.approx(max(gaps["r@10"], gaps["r"]))


def test_run_table_path_that_never_reaches_matched_kl():
    summary = _summary()
    summary.loc[summary["kind"] == "trained", "kl"] = [0.1, 0.2]  # below best-of-4's KL of 0.636
    table = run_table(add_frontier_columns(summary))
    assert math.isnan(table["win_rate_at_matched_kl"].iloc[0])


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


def _path(points: list[tuple[float, float, float]]) -> pd.DataFrame:
    """_summary() with the trained run's checkpoints replaced by (kl, win_rate, mean_length) at steps 10, 20, ..."""
    summary = _summary()
    base = summary[summary["kind"] != "trained"]
    template = summary[summary["kind"] == "trained"].iloc[0]
    rows = [template.to_dict() | dict(policy=f"r@{10 * (j + 1)}", step=10 * (j + 1), kl=kl, win_rate=rate,
                                      mean_length=length) for j, (kl, rate, length) in enumerate(points)]
    return add_frontier_columns(pd.concat([base, pd.DataFrame(rows)], ignore_index=True))


def test_run_table_first_checkpoint_already_past_the_matched_kl():
    """The crossing lies between the reference (KL 0, 0.5, 30 tokens) and the first checkpoint: the path
    starts at the reference. Pins leaving the reference out of the path (NaN) and the wrong end weighted."""
    kl4 = math.log(4) - 0.75
    row = run_table(_path([(1.0, 0.9, 50.0), (1.5, 0.95, 60.0)])).iloc[0]
    assert row["win_rate_at_matched_kl"] == pytest.approx(0.5 + kl4 / 1.0 * 0.4)
    assert row["length_at_matched_kl"] == pytest.approx(30 + kl4 * 20)
    assert row["gap_at_matched_kl"] == pytest.approx(0.5 + kl4 * 0.4 - 0.8)
    assert row["final_step"] == 20 and row["final_kl"] == 1.5 and row["final_win_rate"] == 0.95
    assert row["checkpoints"] == 2


def test_run_table_path_falling_back_through_the_matched_kl_takes_the_first_crossing():
    """KL goes 0 -> 1.0 -> 0.3 -> 1.2 (checkpoints out of step order in the table): the first crossing in
    step order, on the first segment, is the one reported. Pins the last crossing, the table's row
    order instead of the steps', and a crossing found only on a rising segment after the first."""
    kl4 = math.log(4) - 0.75
    frame = _path([(1.0, 0.8, 40.0), (0.3, 0.7, 36.0), (1.2, 0.9, 44.0)])
    frame = frame.iloc[::-1].reset_index(drop=True)  # rows in reverse step order
    row = run_table(frame).iloc[0]
    assert row["win_rate_at_matched_kl"] == pytest.approx(0.5 + kl4 / 1.0 * 0.3)
    assert row["length_at_matched_kl"] == pytest.approx(30 + kl4 * 10)
    assert row["final_step"] == 30 and row["final_kl"] == 1.2
    gaps = frame[frame["kind"] == "trained"].set_index("step")["frontier_gap"]
    assert row["best_step"] == gaps.idxmax() and row["best_frontier_gap"] == pytest.approx(gaps.max())
    # without a reference row the path starts at its first checkpoint, and its first crossing falls
    no_reference = run_table(frame[frame["kind"] != "reference"]).iloc[0]
    w = (kl4 - 1.0) / (0.3 - 1.0)
    assert no_reference["win_rate_at_matched_kl"] == pytest.approx(0.8 + w * (0.7 - 0.8))
