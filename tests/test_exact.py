"""The exact best-of-n world against brute-force enumeration, Monte Carlo, closed forms and theorems.

Tolerances: exact quantities to rounding (1e-12); sampled quantities through chi-square statistics,
accepted below dof + 5 sd (sd = sqrt(2 dof), the normal approximation: a false alarm is a 5-sigma
event); optimised policies through their stationarity conditions, computed here in numpy from the
paper's formulas rather than from bonbon.losses.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
import torch

from bonbon.exact import (
    ExactWorld,
    best_of_n_no_tie_probs,
    best_of_n_probs,
    best_worst_joint,
    bon_margin,
    draw_pairs,
    exact_pairs,
    exact_summary,
    fit_policy,
    kl_divergence,
    limit_study,
    make_world,
    plot_exact_world,
    reward_cdf,
    run_study,
    sample_draws,
    win_rate,
    worst_of_n_probs,
)
from bonbon.theory import beta_star, bon_kl, bon_win_rate, target_margin


@pytest.fixture(autouse=True)
def _one_thread():
    # tiny tensors: more threads only add overhead on a shared machine
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _chi2_limit(dof: int) -> float:
    return dof + 5.0 * math.sqrt(2.0 * dof)


def _pearson(counts: np.ndarray, probs: np.ndarray, min_expected: float = 5.0) -> tuple[float, int]:
    """Pearson chi-square of counts against probs, cells with expected < min_expected pooled into one."""
    expected = probs * counts.sum()
    big = expected >= min_expected
    obs = np.append(counts[big], counts[~big].sum())
    exp = np.append(expected[big], expected[~big].sum())
    keep = exp > 0
    return float(np.sum((obs[keep] - exp[keep]) ** 2 / exp[keep])), int(keep.sum() - 1)


# ------------------------------------------------------------------------------------------------
# exact quantities


def test_kl_divergence_closed_forms() -> None:
    p, q = np.log([0.3, 0.7]), np.log([0.6, 0.4])
    assert kl_divergence(p, q) == pytest.approx(0.3 * math.log(0.5) + 0.7 * math.log(0.7 / 0.4), abs=1e-15)
    assert kl_divergence(p, p) == 0.0
    assert kl_divergence(np.log([0.5, 0.5]), np.array([0.0, -np.inf])) == math.inf
    assert kl_divergence(np.array([0.0, -np.inf]), np.log([0.5, 0.5])) == pytest.approx(math.log(2))


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_order_statistics_match_brute_force_enumeration(n: int) -> None:
    """pi_n, the worst's law, the (best, worst) joint and pi_n's win rate, against all K^n (K^(n+1))
    tuples."""
    rng = np.random.default_rng(n)
    k = 5
    p0 = rng.dirichlet(np.ones(k))
    rewards = rng.standard_normal(k)
    best, worst, joint, win = np.zeros(k), np.zeros(k), np.zeros((k, k)), 0.0
    for draw in itertools.product(range(k), repeat=n + 1):
        prob = float(np.prod(p0[list(draw)]))
        group, opponent = draw[:n], draw[n]
        b, w = max(group, key=lambda y: rewards[y]), min(group, key=lambda y: rewards[y])
        best[b] += prob
        worst[w] += prob
        joint[b, w] += prob
        win += prob * (1.0 if rewards[b] > rewards[opponent] else 0.5 if b == opponent else 0.0)
    assert best_of_n_probs(p0, rewards, n) == pytest.approx(best, abs=1e-12)
    assert worst_of_n_probs(p0, rewards, n) == pytest.approx(worst, abs=1e-12)
    assert best_worst_joint(p0, rewards, n) == pytest.approx(joint, abs=1e-12)
    assert win_rate(best_of_n_probs(p0, rewards, n), p0, rewards) == pytest.approx(win, abs=1e-12)
    assert best_of_n_probs(p0, rewards, n).sum() == pytest.approx(1.0, abs=1e-12)
    if n == 1:
        assert win == pytest.approx(0.5, abs=1e-12)  # pi_0 against itself


def test_rewards_must_not_tie() -> None:
    with pytest.raises(ValueError, match="distinct"):
        reward_cdf(np.array([0.5, 0.5]), np.array([1.0, 1.0]))


def test_best_and_worst_of_sampled_draws_match_the_exact_laws() -> None:
    """Pair selection on Monte-Carlo draws (ties kept) against pi_n and the exact (best, worst) joint."""
    world = make_world(seed=3, n_prompts=4, min_responses=6, max_responses=9)
    draws = sample_draws(world, n_groups=4000, n_max=4, seed=4)
    for n in (2, 4):
        pairs = draw_pairs(world, draws, n, 4000, ties="keep")
        for x, (p0, r) in enumerate(zip(world.p0, world.rewards, strict=True)):
            k = len(p0)
            mine = pairs.prompt == x
            counts = np.zeros((k, k))
            np.add.at(counts, (pairs.best[mine], pairs.worst[mine]), pairs.weight[mine])
            stat, dof = _pearson(counts.sum(axis=1), best_of_n_probs(p0, r, n))
            assert stat < _chi2_limit(dof), (n, x, stat, dof)
            stat, dof = _pearson(counts.ravel(), best_worst_joint(p0, r, n).ravel())
            assert stat < _chi2_limit(dof), (n, x, stat, dof)


def _kl_coarsening_bound(p0: np.ndarray, rewards: np.ndarray, n: int) -> float:
    """KL_continuous - KL_discrete = E_{pi_n}[KL within a response's reward interval], and within [a, b]
    the density ratio n u^(n-1) (b - a) / (b^n - a^n) is at most min(n, (b/a)^(n-1))."""
    q, q_below = reward_cdf(p0, rewards)
    with np.errstate(divide="ignore"):
        within = np.minimum(math.log(n), (n - 1) * np.log(q / q_below))
    return float(np.sum(best_of_n_probs(p0, rewards, n) * within))


@pytest.mark.parametrize("n", [2, 4, 8])
def test_discrete_win_rate_and_kl_are_below_the_continuous_values_and_approach_them(n: int) -> None:
    """A finite response set coarsens the continuous case: by data processing KL(pi_n || pi_0) <= log n -
    (n-1)/n, and a tie (same response) counted 1/2 is won by the best-of-n draw at least half the time in
    the continuous case, so 0 <= n/(n+1) - win <= P(tie with the opponent) / 2. Both gaps shrink as the
    mass per response does (uniform pi_0 on K responses), and hold for a random pi_0 too."""
    gaps = []
    worlds = [(np.full(k, 1.0 / k), np.arange(k, dtype=float)) for k in (4, 16, 64, 256)]
    worlds += list(zip(make_world(0, 3, 6, 12).p0, make_world(0, 3, 6, 12).rewards, strict=True))
    for p0, r in worlds:
        bon = best_of_n_probs(p0, r, n)
        win_gap = bon_win_rate(n) - win_rate(bon, p0, r)
        kl_gap = bon_kl(n) - kl_divergence(np.log(bon), np.log(p0))
        assert -1e-12 <= win_gap <= 0.5 * np.sum(bon * p0) + 1e-12
        assert -1e-12 <= kl_gap <= _kl_coarsening_bound(p0, r, n) + 1e-12
        gaps.append((win_gap, kl_gap))
    uniform = np.array(gaps[:4])
    assert np.all(np.diff(uniform, axis=0) < 0)  # strictly closer as K grows
    assert uniform[-1, 0] < 1e-4 and uniform[-1, 1] < 1e-3


@pytest.mark.parametrize("n", [2, 4, 8])
def test_margin_of_best_of_n_approaches_the_continuous_target_like_1_over_k(n: int) -> None:
    """The expected best-minus-worst log-ratio margin of pi_n tends to (n-1) H_{n-1} = 1/(2 beta*(n)).

    On K equally likely responses the error is first order in 1/K (the lowest response alone, the
    worst with probability about n/K, is off by a constant), so doubling K about halves it."""
    target = target_margin(n)
    gaps = []
    for k in (64, 128, 256, 512):
        p0, r = np.full(k, 1.0 / k), np.arange(k, dtype=float)
        gaps.append(target - bon_margin(p0, r, n, ties="keep"))
    gaps = np.array(gaps)
    assert np.all(gaps > 0)
    assert np.all((gaps[:-1] / gaps[1:] > 1.8) & (gaps[:-1] / gaps[1:] < 2.2)), gaps
    assert gaps[-1] / target < 0.01  # within 1% at K = 512


def test_margin_over_tie_free_groups() -> None:
    """Dropping tied groups (margin 0) divides the margin by P(no tie) = 1 - sum p^n."""
    world = make_world(5, 1, 6, 6)
    p0, r = world.p0[0], world.rewards[0]
    for n in (2, 4):
        assert bon_margin(p0, r, n, "drop") == pytest.approx(bon_margin(p0, r, n, "keep")
                                                             / (1 - np.sum(p0**n)))
        no_tie = best_of_n_no_tie_probs(p0, r, n)
        assert no_tie.sum() == pytest.approx(1.0) and no_tie[np.argmin(r)] == pytest.approx(0.0, abs=1e-15)


@pytest.mark.parametrize("n", [2, 4, 8])
def test_best_of_n_is_not_a_stationary_point_of_ipo_at_beta_star(n: int) -> None:
    """Why beta*(n) pins the margin but not the policy. At pi_n, d = log pi_n/pi_0 = log n + (n-1) log Q in
    the continuous limit, and the IPO residual h - (n-1)H_{n-1} has mean 0 given the best (the other n-1
    draws are uniform below it: E[-log min of n-1 uniforms] = H_{n-1}), but not given the worst (its
    mean grows without bound as the worst's Q goes to 0). The IPO gradient for response k is the
    best-side sum minus the worst-side sum, so it vanishes at pi_n only if the worst side did too.
    Uniform pi_0 on K responses, exact pair distribution: the best side shrinks like 1/K, the worst side
    (and the gradient) does not."""
    best_side, worst_side = [], []
    for k in (64, 256, 1024):
        p0, r = np.full(k, 1.0 / k), np.arange(k, dtype=float)
        joint = best_worst_joint(p0, r, n)
        np.fill_diagonal(joint, 0.0)
        joint /= joint.sum()
        d = np.log(best_of_n_probs(p0, r, n)) - np.log(p0)
        residual = joint * ((d[:, None] - d[None, :]) - target_margin(n))
        best_side.append(np.abs(residual.sum(axis=1)).sum())
        worst_side.append(np.abs(residual.sum(axis=0)).sum())
    assert best_side[0] / best_side[1] > 3.5 and best_side[1] / best_side[2] > 3.5  # ~1/K: 4x per 4x K
    steps = np.abs(np.diff(worst_side))
    assert min(worst_side) > 0.5 and steps[1] < steps[0] / 2  # converging, to a positive value


# ------------------------------------------------------------------------------------------------
# trained tabular policies


def _empirical_best(world: ExactWorld, pairs) -> list[np.ndarray]:
    out = []
    for x, k in enumerate(world.sizes):
        counts = np.zeros(k)
        np.add.at(counts, pairs.best[pairs.prompt == x], pairs.weight[pairs.prompt == x])
        out.append(counts)
    return out


@pytest.mark.parametrize("ties", ["keep", "drop"])
def test_sft_on_the_best_converges_to_best_of_n(ties: str) -> None:
    """SFT on the best (BoNBoN at alpha = 1) is maximum likelihood: its optimum is the empirical law of the
    best, whose G statistic 2 N KL(p_hat || p) against its target is chi-square with (support - 1) dof, so
    KL falls like 1/N. The target is pi_n with ties kept and pi_n given "no tie" with ties dropped."""
    world = make_world(seed=1, n_prompts=4, min_responses=5, max_responses=6, logit_scale=0.5)
    n, sizes = 2, (1000, 10000)
    draws = sample_draws(world, max(sizes), n, seed=2)
    target = best_of_n_probs if ties == "keep" else best_of_n_no_tie_probs
    for size in sizes:
        pairs = draw_pairs(world, draws, n, size, ties)
        fit = fit_policy(world, pairs, "sft", beta_star(n), 1.0)
        assert fit.grad_norm < 1e-6
        g_stat, dof = 0.0, 0
        for x, counts in enumerate(_empirical_best(world, pairs)):
            p = target(world.p0[x], world.rewards[x], n)
            assert np.min(p[p > 0]) * counts.sum() >= 5  # the chi-square approximation's precondition
            assert np.exp(fit.log_probs[x]) == pytest.approx(counts / counts.sum(), abs=1e-6)
            with np.errstate(divide="ignore"):  # ties dropped: the lowest response is never a best
                g_stat += 2 * counts.sum() * kl_divergence(fit.log_probs[x], np.log(p))
            dof += int(np.sum(p > 0)) - 1
        assert g_stat < _chi2_limit(dof), (size, g_stat, dof)
    population = fit_policy(world, exact_pairs(world, n, ties), "sft", beta_star(n), 1.0)
    for x in range(len(world.sizes)):
        assert np.exp(population.log_probs[x]) == pytest.approx(target(world.p0[x], world.rewards[x], n),
                                                                abs=1e-6)


def test_ipo_optimum_is_the_weighted_least_squares_fit_of_the_margins() -> None:
    """IPO on summed log-probs is least squares of h = d_best - d_worst on 1/(2 beta), d = log pi/pi_0; a
    tabular policy can reach its solution, computed here with numpy's lstsq."""
    world = make_world(seed=2, n_prompts=3, min_responses=6, max_responses=8)
    n = 4
    beta = beta_star(n)
    pairs = draw_pairs(world, sample_draws(world, 2000, n, seed=3), n, 2000, "drop")
    fit = fit_policy(world, pairs, "ipo", beta)
    for x, k in enumerate(world.sizes):
        mine = pairs.prompt == x
        b, w, wt = pairs.best[mine], pairs.worst[mine], pairs.weight[mine]
        design = np.zeros((len(b), k))
        design[np.arange(len(b)), b] += 1.0
        design[np.arange(len(b)), w] -= 1.0
        # every response paired, graph connected: unique up to a constant
        assert np.linalg.matrix_rank(design) == k - 1
        root = np.sqrt(wt)[:, None]
        solution = np.linalg.lstsq(root * design, root[:, 0] / (2 * beta), rcond=None)[0]
        d = fit.log_probs[x] - world.log_p0[x]
        assert d - d.mean() == pytest.approx(solution - solution.mean(), abs=1e-6)


@pytest.mark.parametrize("alpha", [0.0, 0.005, 0.05, 0.2])
def test_two_responses_closed_form_margin(alpha: float) -> None:
    """With two responses every pair is (higher, lower): IPO reaches h = 1/(2 beta) exactly, and BoNBoN's
    stationarity -alpha (1 - pi(high)) + 2 (1 - alpha)(h - 1/(2 beta)) = 0 gives h in closed form."""
    world = ExactWorld([np.array([0.3, -0.2]), np.array([1.0, 0.0])],
                       [np.array([0.0, 1.0]), np.array([2.0, 1.0])])
    beta = 0.2
    fit = fit_policy(world, exact_pairs(world, 4, "drop"), "ipo" if alpha == 0 else "bonbon", beta, alpha)
    for x, high in enumerate((1, 0)):
        h = ((fit.log_probs[x][high] - fit.log_probs[x][1 - high])
             - (world.log_p0[x][high] - world.log_p0[x][1 - high]))
        expected = 1 / (2 * beta) + alpha * (1 - math.exp(fit.log_probs[x][high])) / (2 * (1 - alpha))
        assert h == pytest.approx(expected, abs=1e-7)


def test_bonbon_fit_is_stationary_for_the_papers_loss() -> None:
    """The gradient of alpha * (-log pi(best)) + (1 - alpha)(h - 1/(2 beta))^2, written out here, vanishes at
    the fitted policy on every response that is in some pair (the others are at probability 0)."""
    world = make_world(seed=4, n_prompts=3, min_responses=6, max_responses=10)
    n, alpha = 4, 0.05
    beta = beta_star(n)
    pairs = draw_pairs(world, sample_draws(world, 500, n, seed=5), n, 500, "drop")
    fit = fit_policy(world, pairs, "bonbon", beta, alpha)
    wt = pairs.weight / pairs.total
    for x, k in enumerate(world.sizes):
        mine = pairs.prompt == x
        lp, lp0 = fit.log_probs[x], world.log_p0[x]
        b, w, v = pairs.best[mine], pairs.worst[mine], wt[mine]
        h = (lp[b] - lp0[b]) - (lp[w] - lp0[w])
        grad = alpha * v.sum() * np.exp(lp)  # d(-log pi(b))/d theta = pi - onehot(b)
        np.add.at(grad, b, -alpha * v)
        residual = 2 * (1 - alpha) * v * (h - 1 / (2 * beta))
        np.add.at(grad, b, residual)
        np.add.at(grad, w, -residual)
        paired = np.isin(np.arange(k), np.concatenate([b, w]))
        assert np.abs(grad[paired]).max() < 1e-6
        assert np.all(np.isneginf(lp[~paired]))


def test_dpo_has_no_minimiser_on_best_worst_pairs() -> None:
    """Every pair points up the reward order, so DPO's margins grow as long as the optimiser runs: a
    tighter stopping tolerance gives a larger margin and a lower loss, on a policy collapsed onto the top
    response."""
    world = make_world(seed=6, n_prompts=2, min_responses=6, max_responses=6)
    pairs = exact_pairs(world, 2, "drop")
    loose = fit_policy(world, pairs, "dpo", 0.1, tolerance=1e-4)
    tight = fit_policy(world, pairs, "dpo", 0.1, tolerance=1e-10)
    assert tight.mean_margin > loose.mean_margin + 10 and tight.loss < loose.loss
    top = [int(np.argmax(r)) for r in world.rewards]
    assert all(math.exp(tight.log_probs[x][t]) > 1 - 1e-6 for x, t in enumerate(top))  # collapsed on the top


@pytest.fixture(scope="module")
def small_study():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    table = run_study(n_prompts=2, min_responses=5, max_responses=6, n_values=(2, 4), pair_counts=(200,),
                      alphas=(0.05,), dpo_betas=(0.1,))
    torch.set_num_threads(threads)
    return pd.concat([table, limit_study(sizes=(8,), n_values=(2,), alphas=(0.05,))], ignore_index=True)


def test_study_table(small_study) -> None:
    """A small run of the study: its best-of-n rows are pi_n, SFT with ties kept reaches pi_n on the exact
    pair distribution, and every fit with a minimiser ended at a small gradient."""
    table = small_study[small_study["world"] == "random"]
    bon = table[table["loss"] == "best_of_n"].set_index("n")
    for n in (2, 4):
        assert bon.loc[n, "kl_to_bon"] == 0.0 and bon.loc[n, "win_rate"] <= bon_win_rate(n)
    limit = table[(table["loss"] == "sft") & (table["ties"] == "keep") & (table["n_pairs"] == -1)]
    assert (limit["kl_reverse_to_bon"] < 1e-8).all() and len(limit) == 2
    fitted = small_study[small_study["has_minimiser"] & small_study["grad_norm"].notna()]
    assert (fitted["grad_norm"] < 1e-6).all()
    assert set(table["loss"]) == {"best_of_n", "best_of_n_no_tie", "sft", "bonbon", "ipo", "dpo"}
    assert set(small_study["world"]) == {"random", "uniform-K8"}


def test_summary_table_and_figure(small_study, tmp_path) -> None:
    summary = exact_summary(small_study)
    trained = summary[~summary["method"].str.startswith("best_of_n")]
    assert set(trained["n_pairs"]) == {200, -1}
    assert summary["curve_win_rate"].notna().any()
    fig = plot_exact_world(small_study, tmp_path / "exact.png")
    assert (tmp_path / "exact.png").stat().st_size > 0
    gids = {artist.get_gid() for ax in fig.axes for artist in [*ax.lines, *ax.collections]}
    assert {"theory", "bon:2", "bon:4", "curve:2:ipo β*", "limit:4:sft (ties kept)",
            "curve:4:dpo β=0.1"} <= gids
    # the curve of a method holds its KL(pi_theta || pi_n) at 200 pairs and in the limit
    (line,) = [ln for ln in fig.axes[0].lines if ln.get_gid() == "curve:2:ipo β*"]
    rows = (small_study[(small_study["world"] == "random") & (small_study["n"] == 2)
                        & (small_study["loss"] == "ipo") & (small_study["beta_rule"] == "beta_star")]
            .sort_values("n_pairs", key=lambda c: c.replace(-1, 10**9)))
    assert line.get_ydata() == pytest.approx(rows["kl_reverse_to_bon"].to_numpy())


def test_policy_metrics_both_kl_directions_by_hand() -> None:
    """Uniform pi_0 on three responses with distinct rewards: pi_2 = Q^2 - Q(-)^2 = (1, 3, 5) / 9. A policy
    p = (0.2, 0.3, 0.5): KL(pi_2 || p), KL(p || pi_2), KL(p || pi_0) and the win rate (no ties across
    distinct responses, same response 1/2) written out. Pins the two KL directions swapped or one of them
    against pi_0, and the win rate's tie half."""
    from bonbon.exact import policy_metrics

    world = ExactWorld(logits=[np.zeros(3)], rewards=[np.array([0.0, 1.0, 2.0])])
    p, bon = np.array([0.2, 0.3, 0.5]), np.array([1.0, 3.0, 5.0]) / 9
    metrics = policy_metrics(world, [np.log(p)], n=2)
    assert metrics["kl_to_bon"] == pytest.approx(float(np.sum(bon * np.log(bon / p))), abs=1e-12)
    assert metrics["kl_reverse_to_bon"] == pytest.approx(float(np.sum(p * np.log(p / bon))), abs=1e-12)
    assert metrics["kl_from_reference"] == pytest.approx(float(np.sum(p * np.log(3 * p))), abs=1e-12)
    assert metrics["win_rate"] == pytest.approx(0.2 * (0.5 / 3) + 0.3 * (1 / 3 + 0.5 / 3)
                                                + 0.5 * (2 / 3 + 0.5 / 3))
    # the two differ here
    assert metrics["kl_to_bon"] != pytest.approx(metrics["kl_reverse_to_bon"], abs=1e-3)
    # pi_2 itself: both KLs 0, its win rate sum pi_2 * (Q(-) + q/2)
    exact = policy_metrics(world, [np.log(bon)], n=2)
    assert (exact["kl_to_bon"] == pytest.approx(0.0, abs=1e-15)
            and exact["kl_reverse_to_bon"] == pytest.approx(0.0, abs=1e-15))
    assert exact["win_rate"] == pytest.approx((1 * 0.5 / 3 + 3 * 0.5 + 5 * (2 / 3 + 0.5 / 3)) / 9)
    assert exact["kl_from_reference"] == pytest.approx(float(np.sum(bon * np.log(3 * bon))))
    # a second prompt (two responses, the policy = pi_0 there): every metric is the prompt mean
    two = ExactWorld(logits=[np.zeros(3), np.zeros(2)],
                     rewards=[np.array([0.0, 1.0, 2.0]), np.array([1.0, 0.0])])
    both = policy_metrics(two, [np.log(p), np.log([0.5, 0.5])], n=2)
    # pi_2 = (3/4, 1/4) there: the first response has the larger reward
    second = {"kl_to_bon": 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5),
              "kl_reverse_to_bon": 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25),
              "kl_from_reference": 0.0, "win_rate": 0.5}
    for key, value in second.items():
        assert both[key] == pytest.approx((metrics[key] + value) / 2, abs=1e-12), key


def test_discrete_beta_from_pi_ns_own_margin_by_hand() -> None:
    """The same world, n = 2: log pi_2/pi_0 = log(1/3, 1, 5/3); the pairs (best, worst) = (1,0), (2,0), (2,1)
    each have probability 2/9 and margins log 3, log 5, log 5/3: 4/9 log 5 over all groups, 2/3 log 5 over
    the tie-free ones (ties, 3/9, dropped). Pins the margin's sign or normalisation by the tie-free mass."""
    p0, rewards = np.full(3, 1 / 3), np.array([0.0, 1.0, 2.0])
    assert bon_margin(p0, rewards, 2, "keep") == pytest.approx(4 / 9 * math.log(5), abs=1e-12)
    assert bon_margin(p0, rewards, 2, "drop") == pytest.approx(2 / 3 * math.log(5), abs=1e-12)
    with pytest.raises(ValueError, match="ties must be 'drop' or 'keep'"):
        bon_margin(p0, rewards, 2, "both")


def test_study_rows_carry_the_discrete_beta_and_pi_ns_margins(small_study) -> None:
    """The IPO row with beta_rule bon_margin is trained at 1 / (2 x pi_n's tie-free mean margin), the
    column it is reported beside; the margins are prompt means of bon_margin. Pins the discrete beta from
    the all-groups margin, without the factor 2, or at beta*."""
    table = small_study[small_study["world"] == "random"]
    world = make_world(0, 2, 5, 6, 1.0)
    for n in (2, 4):
        rows = table[table["n"] == n]
        drop = float(np.mean([bon_margin(p, r, n, "drop")
                              for p, r in zip(world.p0, world.rewards, strict=True)]))
        keep = float(np.mean([bon_margin(p, r, n, "keep")
                              for p, r in zip(world.p0, world.rewards, strict=True)]))
        assert rows["bon_margin"].to_numpy() == pytest.approx(drop) and drop > keep
        assert rows["bon_margin_all_groups"].to_numpy() == pytest.approx(keep)
        discrete = rows[rows["beta_rule"] == "bon_margin"]
        assert set(discrete["loss"]) == {"ipo"} and set(discrete["ties"]) == {"drop"}
        assert discrete["beta"].to_numpy() == pytest.approx(1 / (2 * drop))
        star = rows[(rows["loss"] == "ipo") & (rows["beta_rule"] == "beta_star")]
        assert star["beta"].to_numpy() == pytest.approx(beta_star(n)) and len(star) == len(discrete)
        assert rows["target_margin"].to_numpy() == pytest.approx(target_margin(n))
        assert rows["tie_probability"].to_numpy() == pytest.approx(np.mean([np.sum(p**n) for p in world.p0]))
