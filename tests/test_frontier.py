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
