"""Evaluation statistics on hand-made inputs with answers worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from bonbon.metrics import (
    bootstrap_ci,
    check_kl_sampling,
    kl_estimate,
    mean_se,
    summarize_lengths,
    win_rate,
    win_scores,
)

# ---------------------------------------------------------------------------------------- win rate


def test_win_rate_counts_ties_half():
    # scores: tie 1/2, loss 0, win 1
    assert win_scores([1, 2, 3], [1, 3, 0]).tolist() == [0.5, 0.0, 1.0]
    rate, se = win_rate([1, 2, 3], [1, 3, 0])
    assert rate == pytest.approx((0.5 + 0 + 1) / 3)
    # deviations from 0.5: 0, -0.5, 0.5 -> var (ddof=1) = 0.5 / 2 = 0.25 -> se = 0.5 / sqrt(3)
    assert se == pytest.approx(0.5 / math.sqrt(3))


def test_win_rate_all_ties_is_half():
    rate, se = win_rate([0.3, 0.3, 1.0, 2.0], [0.3, 0.3, 1.0, 2.0])
    assert rate == 0.5
    assert se == 0.0


def test_win_rate_accepts_pandas():
    rate, _ = win_rate(pd.Series([2.0, 0.0]), pd.Series([1.0, 1.0]))
    assert rate == 0.5


@pytest.mark.parametrize(
    "policy,reference,match",
    [
        ([], [], "over zero rows"),
        ([1.0, np.nan], [0.0, 0.0], "NaN"),
        ([1.0, 2.0], [0.0, np.nan], "NaN"),
        ([1.0, 2.0], [0.0], "rows"),
    ],
)
def test_win_rate_rejects_bad_input(policy, reference, match):
    with pytest.raises(ValueError, match=match):
        win_rate(policy, reference)


def test_cluster_se_equals_plain_se_with_singleton_groups():
    rng = np.random.default_rng(0)
    p, r = rng.normal(size=50), rng.normal(size=50)
    plain = win_rate(p, r)
    clustered = win_rate(p, r, groups=[f"prompt{i}" for i in range(50)])
    assert clustered[0] == plain[0]
    assert clustered[1] == pytest.approx(plain[1], rel=1e-12)


def test_cluster_se_equal_groups_is_se_of_group_means():
    # groups a, b, c with two rows each; scores a: [1, 1], b: [0, 0.5], c: [1, 0]
    p = [2, 5, 0, 1, 3, 0]
    r = [1, 1, 1, 1, 1, 1]
    groups = ["a", "a", "b", "b", "c", "c"]
    rate, se = win_rate(p, r, groups)
    means = np.array([1.0, 0.25, 0.5])
    assert rate == pytest.approx(means.mean())
    assert se == pytest.approx(means.std(ddof=1) / math.sqrt(3))
    # and it differs from the plain SE that pretends the 6 rows are independent
    assert se != pytest.approx(win_rate(p, r)[1])


def test_cluster_se_unequal_groups_by_hand():
    # scores [1, 0, 1, 0.5, 1], groups a a b c c; mean = 3.5 / 5 = 0.7
    # residuals S_g - n_g * mean: a 1 - 1.4 = -0.4, b 1 - 0.7 = 0.3, c 1.5 - 1.4 = 0.1
    # var = G/(G-1) * (0.16 + 0.09 + 0.01) / N^2 = 1.5 * 0.26 / 25 = 0.0156
    rate, se = win_rate([2, 0, 5, 1, 1], [1, 1, 1, 1, 0], groups=[7, 7, 3, 9, 9])
    assert rate == pytest.approx(0.7)
    assert se == pytest.approx(math.sqrt(0.0156))


def test_se_undefined_for_one_row_or_one_group():
    assert math.isnan(win_rate([1.0], [0.0])[1])
    assert math.isnan(win_rate([1.0, 0.0], [0.0, 1.0], groups=["x", "x"])[1])
    with pytest.raises(ValueError, match="missing"):
        mean_se([1.0, 2.0], groups=["a", None])
    with pytest.raises(ValueError, match="groups"):
        mean_se([1.0, 2.0], groups=["a"])


# ---------------------------------------------------------------------------------------------- KL


def test_kl_estimate_by_hand():
    kl, se = kl_estimate([-1.0, -2.0, -3.0], [-2.0, -2.0, -5.0])
    # differences 1, 0, 2: mean 1, var (ddof=1) 1
    assert kl == pytest.approx(1.0)
    assert se == pytest.approx(1 / math.sqrt(3))
    kl_g, se_g = kl_estimate([-1.0, -2.0, -3.0, -4.0], [-2.0, -2.0, -5.0, -4.0], groups=[0, 0, 1, 1])
    # group means 0.5, 1.0 -> se = std([0.5, 1], ddof=1) / sqrt(2) = 0.25
    assert kl_g == pytest.approx(0.75)
    assert se_g == pytest.approx(0.25)
    with pytest.raises(ValueError, match="over zero rows"):
        kl_estimate([], [])
    with pytest.raises(ValueError, match="NaN"):
        kl_estimate([np.nan], [0.0])


def test_check_kl_sampling():
    assert check_kl_sampling(1.0, 0, 1.0) is None
    assert check_kl_sampling(1.0, None, None) is None
    assert check_kl_sampling(1.0, -1, 1.0) is None
    assert "temperature" in check_kl_sampling(0.7, 0, 1.0)
    assert "top_k=50" in check_kl_sampling(1.0, 50, 1.0)
    assert "top_p" in check_kl_sampling(1.0, 0, 0.9)
    assert "temperature" in check_kl_sampling(None, 0, 1.0)
    msg = check_kl_sampling(0.0, 50, 0.95)
    assert all(word in msg for word in ("temperature", "top_k", "top_p"))


# --------------------------------------------------------------------------------------- bootstrap


def test_bootstrap_ci_brackets_mean_and_is_seeded():
    rng = np.random.default_rng(1)
    values = rng.normal(loc=2.0, size=200)
    groups = np.repeat(np.arange(50), 4)
    lo, hi = bootstrap_ci(values, groups)
    assert lo < values.mean() < hi
    assert hi - lo < 1.0
    assert bootstrap_ci(values, groups) == (lo, hi)
    assert bootstrap_ci(values, groups, seed=1) != (lo, hi)
    lo_med, hi_med = bootstrap_ci(values, groups, stat=np.median, n_boot=200)
    assert lo_med < np.median(values) < hi_med


def test_bootstrap_ci_resamples_groups_not_rows():
    # each prompt's 10 rows are identical: the honest sample size is the 20 prompts, not 200 rows
    rng = np.random.default_rng(2)
    values = np.repeat(rng.normal(size=20), 10)
    groups = np.repeat([f"p{i}" for i in range(20)], 10)
    lo_g, hi_g = bootstrap_ci(values, groups)
    lo_r, hi_r = bootstrap_ci(values, None)
    ratio = (hi_g - lo_g) / (hi_r - lo_r)
    assert 2.2 < ratio < 4.5  # about sqrt(10) = 3.2 wider


def test_bootstrap_ci_constant_and_errors():
    assert bootstrap_ci([3.0, 3.0, 3.0], [0, 1, 2]) == (3.0, 3.0)
    with pytest.raises(ValueError, match="over zero rows"):
        bootstrap_ci([], [])
    with pytest.raises(ValueError, match="level"):
        bootstrap_ci([1.0, 2.0], None, level=1.0)


# ------------------------------------------------------------------------------------------ lengths


def test_summarize_lengths_by_hand():
    out = summarize_lengths([1, 2, 3, 4, 10], [True, True, True, True, False])
    # p90 by linear interpolation: position 0.9 * 4 = 3.6 -> 4 + 0.6 * (10 - 4) = 7.6
    assert out == pytest.approx(
        {"mean_length": 4.0, "median_length": 3.0, "p90_length": 7.6, "unfinished_share": 0.2}
    )
    assert summarize_lengths(np.array([5, 5]), np.array([0, 0]))["unfinished_share"] == 1.0
    with pytest.raises(ValueError, match="over zero rows"):
        summarize_lengths([], [])
    with pytest.raises(ValueError, match="boolean"):
        summarize_lengths([1, 2], ["False", "True"])
