"""Win rates against M reference opponents per prompt: the two-sample U-statistic, its prompt-clustered SE
against a Monte Carlo of a known discrete world, and the calibration row (a fresh reference draw against
the opponents, ½ by construction)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from bonbon.evaluate import (
    add_judge_wins,
    calibration_problems,
    pair_with_opponents,
    summarize,
    summarize_judge,
    summary_table,
)
from bonbon.metrics import mean_se, win_rate_vs_opponents, win_scores_vs_opponents

Z95 = 1.959963984540054


def test_scores_against_every_opponent_by_hand():
    # prompt a: opponents 1, 2, 2 -> 1.5 beats one (1/3), 2 beats one and ties two (2/3); b: one opponent 0.5
    scores = win_scores_vs_opponents([1.5, 2.0, 0.5, 0.1], ["a", "a", "b", "b"], [1.0, 2.0, 2.0, 0.5],
                                     ["a", "a", "a", "b"])
    assert scores.tolist() == pytest.approx([1 / 3, 2 / 3, 0.5, 0.0])
    rate, se = win_rate_vs_opponents([1.5, 2.0, 0.5, 0.1], ["a", "a", "b", "b"], [1.0, 2.0, 2.0, 0.5],
                                     ["a", "a", "a", "b"])
    # prompt means U_a = 1/2, U_b = 1/4: rate 3/8, SE = |1/2 - 1/4| / sqrt(2) / sqrt(2)
    assert rate == pytest.approx(0.375) and se == pytest.approx(0.125)
    with pytest.raises(ValueError, match="group 'c' has no opponents"):
        win_scores_vs_opponents([1.0], ["c"], [1.0], ["a"])
    with pytest.raises(ValueError, match="NaN"):
        win_scores_vs_opponents([math.nan], ["a"], [1.0], ["a"])


# ------------------------------------------------------------------------- a known discrete world

VALUES = 5  # rewards 0 ... 4: ties are frequent, so n/(n+1) is not the answer and only enumeration is


def discrete_world(types: int, seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Reference pmfs q (types x VALUES, Dirichlet(1)) and the best-of-n pmf p = Q^n - Q(-)^n of each."""
    q = np.random.default_rng(seed).dirichlet(np.ones(VALUES), size=types)
    cdf = np.cumsum(q, axis=1)
    below = np.concatenate([np.zeros((types, 1)), cdf[:, :-1]], axis=1)
    return cdf**n - below**n, q


def kernel() -> np.ndarray:
    """h(a, b) = 1[a > b] + ½ 1[a = b] on the reward values."""
    a = np.arange(VALUES)
    return (a[:, None] > a[None, :]) + 0.5 * (a[:, None] == a[None, :])


def exact_moments(p: np.ndarray, q: np.ndarray, k: int, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Per prompt type: theta_x and Var(U | x) = [zeta_11 + (M-1) zeta_10 + (k-1) zeta_01] / (k M)."""
    h = kernel()
    theta = np.einsum("ta,tb,ab->t", p, q, h)
    g = q @ h.T  # g[t, a] = E_Y h(a, Y)
    f = p @ h  # f[t, b] = E_X h(X, b)
    zeta10 = np.einsum("ta,ta->t", p, g**2) - theta**2
    zeta01 = np.einsum("tb,tb->t", q, f**2) - theta**2
    zeta11 = np.einsum("ta,tb,ab->t", p, q, h**2) - theta**2
    return theta, (zeta11 + (m - 1) * zeta10 + (k - 1) * zeta01) / (k * m)


def draw(pmf: np.ndarray, size: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Inverse-CDF draws of reward values, one pmf row per leading index: pmf (..., VALUES)."""
    u = rng.random(size)
    return (u[..., None] > np.cumsum(pmf, axis=-1)[..., None, :]).sum(-1).clip(max=VALUES - 1).astype(float)


def monte_carlo(p: np.ndarray, q: np.ndarray, k: int, m: int, prompts: int, reps: int, seed: int) -> dict:
    """reps replicates: `prompts` prompt types drawn uniformly from the population, k policy draws and m
    opponents each; the estimate, its prompt-clustered SE and a naive SE that treats the k * prompts
    samples as independent (ignoring that they share their prompt's opponents)."""
    rng = np.random.default_rng(seed)
    labels_p, labels_q = np.repeat(np.arange(prompts), k), np.repeat(np.arange(prompts), m)
    out = {"rate": [], "se": [], "naive_se": []}
    for _ in range(reps):
        t = rng.integers(0, len(p), prompts)
        x, y = draw(p[t], (prompts, k), rng).ravel(), draw(q[t], (prompts, m), rng).ravel()
        rate, se = win_rate_vs_opponents(x, labels_p, y, labels_q)
        out["rate"].append(rate)
        out["se"].append(se)
        out["naive_se"].append(mean_se(win_scores_vs_opponents(x, labels_p, y, labels_q))[1])
    return {key: np.array(value) for key, value in out.items()}


@pytest.mark.parametrize(("k", "m"), [(8, 2), (2, 16)])
def test_clustered_se_covers_the_true_win_rate_and_the_naive_se_does_not(k, m):
    """Best-of-3 against the reference on 30 discrete prompt types (true win rate by enumeration), 40
    prompts a replicate. (k, m) = (8, 2): many policy samples share few opponents, as when every policy
    was compared with the same 320 reference draws; (2, 16): the default layout."""
    p, q = discrete_world(types=30, seed=1, n=3)
    theta_x, var_u = exact_moments(p, q, k, m)
    truth, prompts, reps = float(theta_x.mean()), 40, 3000
    assert 0.6 < truth < 0.74  # ties pull best-of-3 below 3/4
    mc = monte_carlo(p, q, k, m, prompts, reps, seed=2)
    # the derivation: Var(theta_hat) = [Var_x theta_x + E_x Var(U | x)] / G, exactly, and the squared
    # clustered SE is unbiased for it (relative SE of a variance from 3000 draws: about 2.6%)
    var = (theta_x.var() + var_u.mean()) / prompts
    assert mc["rate"].var() == pytest.approx(var, rel=0.1)
    assert (mc["se"] ** 2).mean() == pytest.approx(var, rel=0.1)
    assert abs(mc["rate"].mean() - truth) < 4 * math.sqrt(var / reps)  # unbiased
    covered = (np.abs(mc["rate"] - truth) <= Z95 * mc["se"]).mean()
    naive = (np.abs(mc["rate"] - truth) <= Z95 * mc["naive_se"]).mean()
    assert 0.93 <= covered <= 0.97, covered
    if (k, m) == (8, 2):
        # the shared opponents' variance (k-1) zeta_01 / (k M) dominates: the naive interval is far too short
        assert naive < 0.85, naive
    else:
        assert naive < covered  # with 16 opponents the naive SE misses less, but still misses


def test_calibration_is_half_by_construction_and_flagged_only_when_off():
    """A fresh reference draw against opponents of the same distribution wins ½ exactly (h(a, b) + h(b, a)
    = 1, whatever the ties): the interval covers ½ at the nominal rate and |z| > 3 almost never."""
    _, q = discrete_world(types=30, seed=3, n=1)
    theta_x, var_u = exact_moments(q, q, 2, 16)
    assert theta_x == pytest.approx(np.full(30, 0.5), abs=1e-12)
    mc = monte_carlo(q, q, 2, 16, prompts=40, reps=3000, seed=4)
    z = (mc["rate"] - 0.5) / mc["se"]
    assert 0.93 <= (np.abs(z) <= Z95).mean() <= 0.97
    assert (np.abs(z) > 3).mean() < 0.01
    # opponents from another distribution (the best of 2 reference draws): the verdict is off, and shows it
    p2, _ = discrete_world(types=30, seed=3, n=2)
    shifted = monte_carlo(q, p2, 2, 16, prompts=160, reps=200, seed=5)  # the default run has 160 eval prompts
    assert (np.abs(shifted["rate"] - 0.5) / shifted["se"] > 3).mean() > 0.95


# ------------------------------------------------------------------------------ evaluation tables


def samples(rewards: dict[str, list[tuple[float, float]]]) -> pd.DataFrame:
    """(proxy reward, judge reward) per sample of each prompt."""
    return pd.DataFrame([
        {"prompt_id": pid, "sample_idx": j, "reward": r, "judge_reward": jr, "n_tokens": 3, "finished": True,
         "policy_logp": -1.0, "reference_logp": -1.0}
        for pid, values in rewards.items() for j, (r, jr) in enumerate(values)
    ])


def test_pair_with_opponents_compares_each_sample_with_all_m():
    opponents = samples({"a": [(1.0, 0.0), (2.0, 1.0), (9.0, 9.0)],
                         "b": [(0.5, 3.0), (0.5, 0.0), (9.0, 9.0)]})
    policy = samples({"a": [(1.5, -1.0), (2.0, 1.0), (7.0, 7.0)], "b": [(0.5, 4.0), (0.1, 0.0)]})
    table = add_judge_wins(pair_with_opponents(policy, opponents, 2, 2, "p"), opponents, 2, "p")
    # only samples j < k = 2 and opponents l < M = 2 take part
    assert table["win"].tolist() == [0.5, 0.75, 0.5, 0.0] and (table["opponents"] == 2).all()
    assert table["judge_win"].tolist() == [0.0, 0.75, 1.0, 0.25]
    with pytest.raises(ValueError, match=r"p: prompt 'a' has 2 reference opponents, not 3"):
        pair_with_opponents(policy, opponents.drop(index=2), 2, 3, "p")
    with pytest.raises(ValueError, match=r"p: prompt 'c' has no reference opponents"):
        pair_with_opponents(samples({"c": [(1.0, 1.0)]}), opponents, 2, 2, "p")
    with pytest.raises(ValueError, match=r"p: prompt 'b' has a sample without a judge reward"):
        add_judge_wins(table.assign(judge_reward=[0.0, 0.0, 0.0, math.nan]), opponents, 2, "p")


def summary_of(reference_draws: pd.DataFrame, opponents: pd.DataFrame) -> pd.DataFrame:
    table = add_judge_wins(pair_with_opponents(reference_draws, opponents, 2, 16, "ref"), opponents, 16,
                           "ref")
    return summary_table([{**summarize(table, "d-reference", "reference", dataset="d"),
                           **summarize_judge(table)}])


def test_calibration_row_in_the_summary():
    """The reference row is the fresh draws against the opponents: ok within 3 SE of ½, OFF beyond."""
    rng = np.random.default_rng(0)

    def world(shift: float, rows: int) -> pd.DataFrame:
        return samples({f"p{i}": [(rng.normal() + shift, rng.normal()) for _ in range(rows)]
                        for i in range(200)})

    fair = summary_of(world(0.0, 2), world(0.0, 16)).iloc[0]
    assert abs(fair["calibration_z"]) <= 3 and fair["calibration"].startswith("ok: ")
    assert fair["calibration"].endswith("within 3 SE") and fair["judge_calibration"].startswith("ok: ")
    assert fair["calibration_z"] == pytest.approx((fair["win_rate"] - 0.5) / fair["win_rate_se"])
    assert fair["n_opponents"] == 16 and fair["n_samples"] == 400
    # opponents that are better than pi_ref (here: shifted up by a standard deviation): the proxy's check
    # fails
    off = summary_of(world(-1.0, 2), world(0.0, 16))
    assert off.iloc[0]["calibration_z"] < -3 and abs(off.iloc[0]["judge_calibration_z"]) <= 3
    assert (off.iloc[0]["calibration"].startswith("OFF: ")
            and off.iloc[0]["judge_calibration"].startswith("ok: "))
    assert calibration_problems(off) == [f"d (proxy): the reference's own samples against the opponents: "
                                         f"{off.iloc[0]['calibration']}"]
    assert calibration_problems(summary_of(world(0.0, 2), world(0.0, 16))) == []
