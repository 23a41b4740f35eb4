"""Statistics of the evaluation stage: win rate, KL, bootstrap intervals, response lengths.

Every estimate comes with a standard error. Several samples are usually drawn per prompt, and
samples of one prompt are correlated (an easy prompt is won by every sample), so passing
``groups`` (prompt ids) gives a cluster-robust SE that treats prompts, not rows, as the
independent units. All functions are pure: numpy / pandas in, floats out.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pandas as pd

__all__ = [
    "bootstrap_ci",
    "check_kl_sampling",
    "kl_estimate",
    "mean_se",
    "summarize_lengths",
    "win_rate",
    "win_rate_vs_opponents",
    "win_scores",
    "win_scores_vs_opponents",
]


def _as_1d_float(x: npt.ArrayLike, name: str, what: str) -> np.ndarray:
    """1-D float array; ValueError on zero rows, wrong rank or NaN (a NaN would silently poison means)."""
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{what}: {name} must be 1-D, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{what} over zero rows")
    if np.isnan(arr).any():
        raise ValueError(f"{what}: {name} contains {int(np.isnan(arr).sum())} NaN value(s)")
    return arr


def _group_codes(groups: npt.ArrayLike, n: int, what: str) -> np.ndarray:
    """Integer codes 0..G-1 for the group labels (any hashable), checked against the row count."""
    labels = np.asarray(groups)
    if labels.ndim != 1 or labels.shape[0] != n:
        raise ValueError(f"{what}: groups must be 1-D with {n} rows, got shape {labels.shape}")
    codes, _ = pd.factorize(labels, use_na_sentinel=True)
    if (codes < 0).any():
        # a missing prompt id would otherwise form no cluster at all
        raise ValueError(f"{what}: groups contains missing labels")
    return codes


def mean_se(values: npt.ArrayLike, groups: npt.ArrayLike | None = None) -> tuple[float, float]:
    """Mean of ``values`` and its standard error, cluster-robust over ``groups`` when given.

    Without groups: mean = (1/N) sum_i v_i,  SE = std(v, ddof=1) / sqrt(N).

    With groups g = 1..G of sizes n_g and sums S_g = sum_{i in g} v_i, the mean is the ratio
    estimator mean = sum_g S_g / sum_g n_g, and its cluster-robust (sandwich) SE is

        SE^2 = G / (G - 1) * sum_g (S_g - n_g * mean)^2 / N^2.

    With equal group sizes this is exactly std(per-group means, ddof=1) / sqrt(G); with one row per
    group it is exactly the plain SE. SE is NaN when there is a single row (or a single group).
    """
    v = _as_1d_float(values, "values", "mean_se")
    return _mean_se(v, None if groups is None else _group_codes(groups, v.size, "mean_se"))


def _mean_se(v: np.ndarray, codes: np.ndarray | None) -> tuple[float, float]:
    n = v.size
    mean = float(v.mean())
    if codes is None:
        if n < 2:
            return mean, math.nan
        return mean, float(v.std(ddof=1) / math.sqrt(n))
    n_groups = int(codes.max()) + 1
    if n_groups < 2:
        return mean, math.nan
    sums = np.bincount(codes, weights=v, minlength=n_groups)
    sizes = np.bincount(codes, minlength=n_groups).astype(np.float64)
    # residual of each cluster's total around the pooled mean: the ratio-estimator linearisation
    resid = sums - sizes * mean
    var = n_groups / (n_groups - 1) * float(np.sum(resid**2)) / n**2
    return mean, math.sqrt(var)


def win_scores(policy_rewards: npt.ArrayLike, reference_rewards: npt.ArrayLike) -> np.ndarray:
    """Per-row win score s_i = 1[p_i > r_i] + 1/2 * 1[p_i == r_i] (win 1, tie 1/2, loss 0).

    Ties count one half rather than being dropped: dropping them biases the rate away from 1/2
    whenever rewards are discrete (the reference implementation's defect).
    """
    p = _as_1d_float(policy_rewards, "policy_rewards", "win_rate")
    r = _as_1d_float(reference_rewards, "reference_rewards", "win_rate")
    if p.shape != r.shape:
        raise ValueError(f"win_rate: policy_rewards has {p.size} rows but reference_rewards has {r.size}")
    return (p > r).astype(np.float64) + 0.5 * (p == r)


def win_rate(
    policy_rewards: npt.ArrayLike,
    reference_rewards: npt.ArrayLike,
    groups: npt.ArrayLike | None = None,
) -> tuple[float, float]:
    """Win rate of policy samples against paired independent reference samples, with its SE.

    rate = (1/N) sum_i s_i,  s_i = 1[p_i > r_i] + 1/2 * 1[p_i == r_i].

    SE: with ``groups`` (e.g. prompt ids) the cluster-robust SE of :func:`mean_se`
    (G/(G-1) * sum_g (S_g - n_g rate)^2 / N^2, i.e. std of per-group means / sqrt(G) for equal
    sizes); otherwise std(s, ddof=1) / sqrt(N).
    Raises ValueError on zero rows, NaN rewards, or arrays of different length.
    Under best-of-n theory (continuous rewards) the target is n / (n + 1).
    """
    scores = win_scores(policy_rewards, reference_rewards)
    codes = None if groups is None else _group_codes(groups, scores.size, "win_rate")
    return _mean_se(scores, codes)


def win_scores_vs_opponents(
    policy_rewards: npt.ArrayLike,
    policy_groups: npt.ArrayLike,
    opponent_rewards: npt.ArrayLike,
    opponent_groups: npt.ArrayLike,
) -> np.ndarray:
    """Each policy sample's mean win score against *all* the opponents of its group (prompt):

        s_j = (1/M_g) sum_l h(x_j, y_l),   h(x, y) = 1[x > y] + 1/2 * 1[x == y],

    the M_g opponents y_l being the rewards of the reference samples of the same prompt (any number
    per prompt, at least one). The mean of s over the samples of a prompt is the two-sample U-statistic
    U_g of :func:`win_rate_vs_opponents`. Raises ValueError on NaN, mismatched lengths, or a policy
    group without opponents (named).
    """
    p = _as_1d_float(policy_rewards, "policy_rewards", "win_rate_vs_opponents")
    r = _as_1d_float(opponent_rewards, "opponent_rewards", "win_rate_vs_opponents")
    p_labels, r_labels = np.asarray(policy_groups), np.asarray(opponent_groups)
    if p_labels.shape != p.shape or r_labels.shape != r.shape:
        raise ValueError(f"win_rate_vs_opponents: groups must be 1-D with one label per reward, got "
                         f"{p_labels.shape} for {p.shape} policy and {r_labels.shape} for {r.shape} "
                         "opponent rewards")
    codes, _ = pd.factorize(np.concatenate([p_labels, r_labels]), use_na_sentinel=True)
    if (codes < 0).any():
        raise ValueError("win_rate_vs_opponents: groups contains missing labels")
    p_codes, r_codes = codes[: p.size], codes[p.size:]
    counts = np.bincount(r_codes, minlength=int(codes.max()) + 1)
    if (counts[p_codes] == 0).any():
        raise ValueError(f"win_rate_vs_opponents: group {p_labels[counts[p_codes] == 0].tolist()[0]!r} "
                         "has no opponents")
    # one sorted key (group, rank of the reward) for every opponent: counting those of a sample's group
    # below it (and tied with it) is two binary searches, without a loop over groups
    _, ranks = np.unique(np.concatenate([p, r]), return_inverse=True)
    width = int(ranks.max()) + 1
    p_keys, r_keys = p_codes * width + ranks[: p.size], np.sort(r_codes * width + ranks[p.size:])
    below = (np.searchsorted(r_keys, p_keys, side="left")
             - np.searchsorted(r_keys, p_codes * width, side="left"))
    tied = np.searchsorted(r_keys, p_keys, side="right") - np.searchsorted(r_keys, p_keys, side="left")
    scores = (below + 0.5 * tied) / counts[p_codes]
    return scores


def win_rate_vs_opponents(
    policy_rewards: npt.ArrayLike,
    policy_groups: npt.ArrayLike,
    opponent_rewards: npt.ArrayLike,
    opponent_groups: npt.ArrayLike,
) -> tuple[float, float]:
    """Win rate of policy samples against every reference opponent of their prompt, with its SE.

    Setting: prompts g = 1..G drawn from the prompt distribution; on prompt g, k policy samples
    X_gj ~ pi(.|x_g) and M reference opponents Y_gl ~ pi_ref(.|x_g), all independent given x_g (the
    opponents are drawn for this purpose, per prompt: disjoint from every other draw). The target is

        theta = E_x[theta_x],  theta_x = P(X > Y | x) + 1/2 P(X = Y | x),

    estimated by the mean over prompts of the two-sample U-statistics (ties 1/2)

        U_g = 1/(k M) sum_j sum_l h(X_gj, Y_gl),    theta_hat = (1/G) sum_g U_g.

    Variance (Hoeffding decomposition of the (1, 1) kernel h given x): with
    zeta_10 = Var_X(E_Y h), zeta_01 = Var_Y(E_X h), zeta_11 = Var h, counting the pairs of terms of U_g
    that share X, Y, both or neither,

        Var(U_g | x) = [zeta_11 + (M - 1) zeta_10 + (k - 1) zeta_01] / (k M),

    so the opponents' own randomness enters through (k - 1) zeta_01 / (k M): the k samples of a prompt
    share its opponents, and their verdicts are correlated through them. Because the opponents are
    drawn per prompt, the U_g are independent across prompts and

        Var(theta_hat) = [Var_x(theta_x) + E_x Var(U_g | x)] / G,

    which the sample variance of the U_g estimates without bias: SE = std(U_g, ddof=1) / sqrt(G), the
    prompt-clustered SE of :func:`mean_se` on the per-sample scores of :func:`win_scores_vs_opponents`
    (rows weighted equally, the same thing when every prompt has k samples). It covers both samples'
    variance (policy draws and opponents) and the prompts'. For a fixed prompt set it is conservative
    by Var_x(theta_x) / G, which is zero where theta_x is the same on every prompt (best-of-n with
    untied rewards, a fresh reference draw). A naive SE that treats the k G samples as independent,
    std(s, ddof=1) / sqrt(k G), misses the shared-opponent covariance: with few opponents per prompt
    it undercovers badly (tests/test_metrics.py, a Monte Carlo of a discrete world). docs/win-rate.md
    has the derivation at length.
    """
    scores = win_scores_vs_opponents(policy_rewards, policy_groups, opponent_rewards, opponent_groups)
    return _mean_se(scores, _group_codes(policy_groups, scores.size, "win_rate_vs_opponents"))


def kl_estimate(
    policy_logps: npt.ArrayLike,
    reference_logps: npt.ArrayLike,
    groups: npt.ArrayLike | None = None,
) -> tuple[float, float]:
    """Monte-Carlo estimate of KL(pi || pi_ref) in nats from the policy's OWN samples, with its SE.

    KL = E_{y ~ pi(.|x)} [log pi(y|x) - log pi_ref(y|x)]  ~  (1/N) sum_i (lp_i - lr_i),

    where lp_i and lr_i are log-probabilities SUMMED over the response tokens of sample i (see
    :func:`bonbon.logprobs.sequence_logps`), averaged over prompts x as they occur in the rows.

    Valid only for samples drawn from pi itself at temperature 1 with no top-k / top-p truncation
    (full softmax, ancestral sampling): any other sampler draws from a different distribution, so the
    average is not the KL of pi (and can even be negative). Check the sampler's settings with
    :func:`check_kl_sampling`. Individual terms can be negative; only their expectation is >= 0.

    SE: cluster-robust over ``groups`` (prompt ids) when given, else std(d, ddof=1) / sqrt(N), as in
    :func:`mean_se`. Raises ValueError on zero rows, NaN, or arrays of different length.
    """
    lp = _as_1d_float(policy_logps, "policy_logps", "kl_estimate")
    lr = _as_1d_float(reference_logps, "reference_logps", "kl_estimate")
    if lp.shape != lr.shape:
        raise ValueError(f"kl_estimate: policy_logps has {lp.size} rows but reference_logps has {lr.size}")
    diffs = lp - lr
    codes = None if groups is None else _group_codes(groups, diffs.size, "kl_estimate")
    return _mean_se(diffs, codes)


def check_kl_sampling(temperature: float | None, top_k: int | None, top_p: float | None) -> str | None:
    """Why a KL estimate from samples drawn with these settings is invalid, or None if it is valid.

    Valid iff temperature == 1.0, top_k disables truncation (0; None and negative values are read
    as "off" too, as in vLLM's -1) and top_p == 1.0 (None read as "off").
    Pass the settings actually used: Hugging Face ``generate`` applies top_k=50 by default when
    top_k is not given, so an unset top_k there is NOT the full softmax.
    """
    problems = []
    if temperature is None or not math.isclose(float(temperature), 1.0, rel_tol=0.0, abs_tol=1e-9):
        problems.append(
            f"temperature={temperature}: samples come from softmax(logits / T), not from the policy"
        )
    if top_k is not None and top_k > 0:
        problems.append(f"top_k={top_k}: samples come from the policy truncated to its top {top_k} tokens")
    if top_p is not None and not math.isclose(float(top_p), 1.0, rel_tol=0.0, abs_tol=1e-9):
        problems.append(f"top_p={top_p}: samples come from the policy truncated to its nucleus")
    if not problems:
        return None
    return (
        "Monte-Carlo KL(pi || pi_ref) needs samples from pi itself (temperature 1, top_k 0, top_p 1): "
        + "; ".join(problems)
        + "."
    )


def bootstrap_ci(
    values: npt.ArrayLike,
    groups: npt.ArrayLike | None,
    stat: Callable[[np.ndarray], float] = np.mean,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap interval for stat(values), resampling groups (prompts) with replacement.

    Each replicate draws G groups out of G with replacement and keeps all rows of each drawn group
    (a group drawn k times contributes its rows k times); the interval is the
    ((1 - level)/2, (1 + level)/2) quantiles of stat over the n_boot replicates.
    Resampling whole prompts keeps their within-prompt correlation (rows are not independent).
    ``groups=None`` resamples rows. ``stat`` must not depend on row order (mean, median, ...).
    Raises ValueError on zero rows or NaN values.
    """
    v = _as_1d_float(values, "values", "bootstrap_ci")
    if not 0.0 < level < 1.0:
        raise ValueError(f"bootstrap_ci: level must be in (0, 1), got {level}")
    if n_boot < 1:
        raise ValueError(f"bootstrap_ci: n_boot must be >= 1, got {n_boot}")
    codes = np.arange(v.size) if groups is None else _group_codes(groups, v.size, "bootstrap_ci")
    n_groups = int(codes.max()) + 1
    rng = np.random.default_rng(seed)
    # times each group is drawn, per replicate; repeating rows by their group's count is the
    # same multiset as concatenating the drawn groups, without a Python loop over groups
    counts = rng.multinomial(n_groups, np.full(n_groups, 1.0 / n_groups), size=n_boot)
    stats = np.array([float(stat(np.repeat(v, counts[b][codes]))) for b in range(n_boot)])
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(stats, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


def summarize_lengths(n_tokens: npt.ArrayLike, finished: npt.ArrayLike) -> dict[str, float]:
    """Response length summary: mean, median and 90th percentile of n_tokens, and unfinished share.

    mean_length = (1/N) sum_i n_i; median_length, p90_length: linear-interpolated quantiles;
    unfinished_share = (1/N) sum_i 1[not finished_i] (responses cut at max tokens, no EOS).
    A policy can buy reward with length, so length is reported next to every win rate.
    """
    n = _as_1d_float(n_tokens, "n_tokens", "summarize_lengths")
    fin = np.asarray(finished)
    if fin.shape != n.shape:
        raise ValueError(f"summarize_lengths: finished has shape {fin.shape}, n_tokens has {n.shape}")
    if fin.dtype != np.bool_:
        # refuse e.g. strings "False" that would be truthy
        if not np.isin(fin, [0, 1]).all():
            raise ValueError("summarize_lengths: finished must be boolean (or 0/1)")
        fin = fin.astype(bool)
    return {
        "mean_length": float(n.mean()),
        "median_length": float(np.median(n)),
        "p90_length": float(np.percentile(n, 90)),
        "unfinished_share": float((~fin).mean()),
    }
