"""Best-of-n theory: closed forms against hand values, Monte Carlo and numeric integration."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from bonbon.theory import beta_star, bon_curve, bon_kl, bon_win_rate, harmonic, target_margin


def test_harmonic_small_values() -> None:
    assert harmonic(0) == 0.0
    assert harmonic(1) == 1.0
    assert harmonic(3) == pytest.approx(1 + 1 / 2 + 1 / 3)
    assert harmonic(7) == pytest.approx(363 / 140)  # 2.592857...


def test_harmonic_rejects_negative() -> None:
    with pytest.raises(ValueError):
        harmonic(-1)


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        (2, 0.5),  # 1 / (2 * 1 * 1)
        (4, 1 / 11),  # 1 / (2 * 3 * 11/6) = 1/11
        (8, 0.0275482),  # 1 / (2 * 7 * 363/140) = 1 / 36.3
    ],
)
def test_beta_star(n: int, expected: float) -> None:
    assert beta_star(n) == pytest.approx(expected, abs=1e-6)


def test_beta_star_n4_exact() -> None:
    assert beta_star(4) == pytest.approx(0.0909090909, abs=1e-9)


def test_target_margin_n8_and_inverse_of_beta_star() -> None:
    assert target_margin(8) == pytest.approx(18.15, abs=1e-2)
    for n in range(2, 20):
        assert target_margin(n) == pytest.approx(1 / (2 * beta_star(n)))


@pytest.mark.parametrize("n", [1, 0, -3])
def test_beta_star_and_margin_need_n_at_least_2(n: int) -> None:
    with pytest.raises(ValueError):
        beta_star(n)
    with pytest.raises(ValueError):
        target_margin(n)


@pytest.mark.parametrize(
    ("n", "win", "kl"),
    [(2, 0.667, 0.193), (4, 0.800, 0.636), (8, 0.889, 1.204)],
)
def test_win_rate_and_kl_values(n: int, win: float, kl: float) -> None:
    assert bon_win_rate(n) == pytest.approx(win, abs=1e-3)
    assert bon_kl(n) == pytest.approx(kl, abs=1e-3)
    # the closed forms, written out
    assert bon_win_rate(n) == pytest.approx(n / (n + 1))
    assert bon_kl(n) == pytest.approx(math.log(n) - (n - 1) / n)


def test_n1_is_the_base_policy() -> None:
    assert bon_win_rate(1) == 0.5
    assert bon_kl(1) == 0.0


def test_scalar_in_float_out_and_vectorised() -> None:
    assert isinstance(bon_win_rate(4), float)
    assert isinstance(bon_kl(4), float)
    n = np.array([2, 4, 8])
    np.testing.assert_allclose(bon_win_rate(n), n / (n + 1))
    np.testing.assert_allclose(bon_kl(n), np.log(n) - (n - 1) / n)


def test_win_rate_and_kl_reject_n_below_1() -> None:
    with pytest.raises(ValueError):
        bon_win_rate(0)
    with pytest.raises(ValueError):
        bon_kl(np.array([1, 0]))


def test_bon_curve() -> None:
    df = bon_curve(8)
    assert isinstance(df, pd.DataFrame)
    assert list(df.columns) == ["n", "win_rate", "kl"]
    assert df["n"].tolist() == list(range(1, 9))
    row = df.set_index("n").loc[8]
    assert row["win_rate"] == pytest.approx(8 / 9)
    assert row["kl"] == pytest.approx(math.log(8) - 7 / 8)
    # both grow with n: more samples, better but further from pi_0
    assert df["win_rate"].is_monotonic_increasing
    assert df["kl"].is_monotonic_increasing
    with pytest.raises(ValueError):
        bon_curve(0)


@pytest.mark.parametrize("n", [2, 4, 8])
def test_monte_carlo_best_of_n_win_rate(n: int) -> None:
    """Best of n uniform rewards vs one independent draw wins at rate n/(n+1) (within 4 SE)."""
    rng = np.random.default_rng(1234 + n)
    trials = 200_000
    best = rng.random((trials, n)).max(axis=1)
    reference = rng.random(trials)
    wins = (best > reference).mean()
    p = n / (n + 1)
    se = math.sqrt(p * (1 - p) / trials)
    assert abs(wins - bon_win_rate(n)) < 4 * se


@pytest.mark.parametrize("n", [2, 4, 8])
def test_monte_carlo_target_margin(n: int) -> None:
    """(n-1) H_{n-1} is E[log pi_n/pi_0 of best] - E[log pi_n/pi_0 of worst],
    log pi_n/pi_0 = log n + (n-1) log u."""
    rng = np.random.default_rng(99 + n)
    u = rng.random((200_000, n))
    d = (n - 1) * (np.log(u.max(axis=1)) - np.log(u.min(axis=1)))
    se = d.std(ddof=1) / math.sqrt(len(d))
    assert abs(d.mean() - target_margin(n)) < 4 * se


@pytest.mark.parametrize("n", [1, 2, 4, 8, 16])
def test_kl_formula_by_numeric_integration(n: int) -> None:
    """KL(pi_n || pi_0) = int_0^1 n u^(n-1) log(n u^(n-1)) du, the density of the max of n uniforms."""
    m = 1_000_000
    u = (np.arange(m) + 0.5) / m  # midpoint rule; the integrand is 0 at u = 0 for n >= 2 (log n at n=1)
    density = n * u ** (n - 1)
    integral = np.sum(density * (math.log(n) + (n - 1) * np.log(u))) / m
    assert integral == pytest.approx(math.log(n) - (n - 1) / n, abs=1e-6)
    assert integral == pytest.approx(bon_kl(n), abs=1e-6)
