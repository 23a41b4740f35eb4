"""An exact best-of-n world: finite response sets, a known pi_0, and tabular policies trained on pairs.

Every prompt x has K responses with a known reference pi_0(y|x) (softmax of seeded random logits) and a
reward r(x, y) with no ties. With Q(y) = pi_0(r(Y) <= r(y)) and Q(y-) = pi_0(r(Y) < r(y)), the
best-of-n distribution is exactly

    pi_n(y) = Q(y)^n - Q(y-)^n

(the continuous-reward formula n Q^(n-1) pi_0 is its limit as the response set grows fine-grained),
so win rates, KL divergences and the expected best-minus-worst log-ratio margin are sums over y, not
estimates. A tabular policy (one logit per (x, y), started at pi_0's logits) is trained with the
project's own losses (:mod:`bonbon.losses`, called from :func:`_pair_losses` only) on best/worst pairs
drawn from pi_0, or on the exact pair distribution itself (:func:`exact_pairs`; ``n_pairs = -1`` in
the study's table: the infinite-data limit), and compared with pi_n exactly. docs/exact-world.md
reports what it finds.

Ties: with discrete responses all n draws can be the same response, so best == worst. The workflow's
pair selection (:func:`bonbon.pairs.select_pairs`) drops such a prompt; ``ties="drop"`` does the same
and ``ties="keep"`` keeps the pair. A kept tie has margin h = 0 identically, so it gives the IPO and DPO
terms no gradient; it matters only for the SFT term, whose target is pi_n with ties kept and pi_n
conditioned on "no tie" with ties dropped (:func:`best_of_n_no_tie`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from bonbon.frontier import theory_win_rate_at_kl
from bonbon.losses import LOSSES
from bonbon.theory import beta_star, bon_kl, bon_win_rate, target_margin

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "ExactWorld",
    "Fit",
    "Pairs",
    "best_of_n_no_tie_probs",
    "best_of_n_probs",
    "best_worst_joint",
    "bon_margin",
    "draw_pairs",
    "exact_pairs",
    "exact_summary",
    "fit_policy",
    "kl_divergence",
    "limit_study",
    "make_world",
    "plot_exact_world",
    "reward_cdf",
    "run_study",
    "sample_draws",
    "win_rate",
    "worst_of_n_probs",
]

LOSS_NAMES = ("sft", "bonbon", "ipo", "dpo")  # sft: BoNBoN at alpha = 1


# ----------------------------------------------------------------------------------------------
# Exact quantities of one prompt (1-D arrays over its K responses)


def reward_cdf(p0: np.ndarray, rewards: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(Q(y), Q(y-)) per response: pi_0 mass with reward <= r(y) and < r(y). Rewards must not tie."""
    p0, rewards = np.asarray(p0, dtype=float), np.asarray(rewards, dtype=float)
    if len(np.unique(rewards)) != len(rewards):
        raise ValueError("rewards must be distinct (no ties) in the exact world")
    order = np.argsort(rewards)
    below = np.empty_like(p0)
    below[order] = np.concatenate([[0.0], np.cumsum(p0[order])[:-1]])
    return below + p0, below


def best_of_n_probs(p0: np.ndarray, rewards: np.ndarray, n: int) -> np.ndarray:
    """Exact best-of-n distribution pi_n(y) = Q(y)^n - Q(y-)^n."""
    q, q_below = reward_cdf(p0, rewards)
    return q**n - q_below**n


def worst_of_n_probs(p0: np.ndarray, rewards: np.ndarray, n: int) -> np.ndarray:
    """Exact distribution of the worst of n draws: (1 - Q(y-))^n - (1 - Q(y))^n."""
    q, q_below = reward_cdf(p0, rewards)
    return (1.0 - q_below) ** n - (1.0 - q) ** n


def best_of_n_no_tie_probs(p0: np.ndarray, rewards: np.ndarray, n: int) -> np.ndarray:
    """pi_n conditioned on "not all n draws equal": the best's law once tied groups are dropped."""
    p0 = np.asarray(p0, dtype=float)
    tie = p0**n  # all n draws are y: best == worst == y
    return (best_of_n_probs(p0, rewards, n) - tie) / (1.0 - tie.sum())


def best_worst_joint(p0: np.ndarray, rewards: np.ndarray, n: int) -> np.ndarray:
    """J[b, w] = P(best of n draws is b, worst is w), by inclusion-exclusion on the reward order.

    For r(w) <= r(b): P(all draws in [w, b]) - P(all in (w, b]) - P(all in [w, b)) + P(all in (w, b)),
    with intervals in the reward order; zero where r(w) > r(b). The diagonal is the tie p0(y)^n.
    """
    q, q_below = reward_cdf(p0, rewards)
    hi, hi_below = q[:, None], q_below[:, None]  # best b on rows
    lo, lo_below = q[None, :], q_below[None, :]  # worst w on columns

    def mass(top: np.ndarray, bottom: np.ndarray) -> np.ndarray:
        return np.clip(top - bottom, 0.0, None) ** n

    joint = mass(hi, lo_below) - mass(hi, lo) - mass(hi_below, lo_below) + mass(hi_below, lo)
    rewards = np.asarray(rewards, dtype=float)
    joint[rewards[:, None] < rewards[None, :]] = 0.0
    np.fill_diagonal(joint, np.asarray(p0, dtype=float) ** n)  # the formula's diagonal is p^n as well
    return np.clip(joint, 0.0, None)  # rounding


def kl_divergence(logp: np.ndarray, logq: np.ndarray) -> float:
    """KL(p || q) = sum_y p(y) (log p(y) - log q(y)) from log-probs (-inf allowed; 0 log 0 = 0).

    Log-probs, not probabilities, so that a policy whose logits ran far (DPO) is not turned into an
    infinite KL by underflow of q.
    """
    logp, logq = np.asarray(logp, dtype=float), np.asarray(logq, dtype=float)
    p = np.exp(logp)
    support = p > 0
    if np.any(np.isneginf(logq[support])):
        return math.inf
    return float(np.sum(p[support] * (logp[support] - logq[support])))


def win_rate(policy: np.ndarray, p0: np.ndarray, rewards: np.ndarray) -> float:
    """P(r(Y) > r(Y0)) + P(r(Y) = r(Y0)) / 2 for Y ~ policy, Y0 ~ pi_0 independent (ties: same y)."""
    q, q_below = reward_cdf(p0, rewards)
    return float(np.sum(np.asarray(policy, dtype=float) * (q_below + 0.5 * (q - q_below))))


def bon_margin(p0: np.ndarray, rewards: np.ndarray, n: int, ties: str = "drop") -> float:
    """Expected best-minus-worst margin of pi_n itself over n draws from pi_0:

        E[log pi_n/pi_0 (best) - log pi_n/pi_0 (worst)],

    the discrete counterpart of (n-1) H_{n-1} = 1/(2 beta*(n)). ``ties="keep"`` averages over all
    groups (a tie has margin 0), ``ties="drop"`` over the groups that give a pair.
    """
    p0 = np.asarray(p0, dtype=float)
    joint = best_worst_joint(p0, rewards, n)
    log_ratio = np.log(best_of_n_probs(p0, rewards, n)) - np.log(p0)
    total = float(np.sum(joint * (log_ratio[:, None] - log_ratio[None, :])))
    if ties == "keep":
        return total
    if ties == "drop":
        return total / (1.0 - float(np.trace(joint)))
    raise ValueError(f"ties must be 'drop' or 'keep', got {ties!r}")


# ----------------------------------------------------------------------------------------------
# The world and its pairs


@dataclass
class ExactWorld:
    """Prompts with finite response sets: reference logits and rewards per prompt (lists of 1-D arrays)."""

    logits: list[np.ndarray]
    rewards: list[np.ndarray]
    log_p0: list[np.ndarray] = field(init=False)

    def __post_init__(self) -> None:
        self.log_p0 = [lg - np.logaddexp.reduce(lg) for lg in self.logits]
        for r in self.rewards:
            if len(np.unique(r)) != len(r):
                raise ValueError("rewards must be distinct within a prompt")

    @property
    def p0(self) -> list[np.ndarray]:
        return [np.exp(lp) for lp in self.log_p0]

    @property
    def sizes(self) -> list[int]:
        return [len(lg) for lg in self.logits]


def make_world(seed: int, n_prompts: int, min_responses: int, max_responses: int,
               logit_scale: float = 1.0) -> ExactWorld:
    """A seeded world: K ~ uniform{min..max} per prompt, logits ~ N(0, scale^2), rewards ~ N(0, 1)."""
    if not 2 <= min_responses <= max_responses:
        raise ValueError(f"need 2 <= min_responses <= max_responses, got {min_responses}, {max_responses}")
    rng = np.random.default_rng(seed)
    sizes = rng.integers(min_responses, max_responses + 1, size=n_prompts)
    logits = [logit_scale * rng.standard_normal(k) for k in sizes]
    rewards = [rng.standard_normal(k) for k in sizes]  # distinct with probability 1; checked
    return ExactWorld(logits, rewards)


@dataclass
class Pairs:
    """Weighted best/worst pairs: prompt, best and worst response indices, weight (count or probability)."""

    prompt: np.ndarray
    best: np.ndarray
    worst: np.ndarray
    weight: np.ndarray

    @property
    def total(self) -> float:
        return float(self.weight.sum())


def _compress(prompt: np.ndarray, best: np.ndarray, worst: np.ndarray, k_max: int) -> Pairs:
    # identical pairs merged into one weighted row: the weighted mean loss equals the mean over rows
    key = (prompt * k_max + best) * k_max + worst
    uniq, counts = np.unique(key, return_counts=True)
    return Pairs(uniq // (k_max * k_max), (uniq // k_max) % k_max, uniq % k_max, counts.astype(float))


def draw_pairs(world: ExactWorld, draws: list[np.ndarray], n: int, n_pairs: int, ties: str) -> Pairs:
    """Best and worst of the first n of each of the first ``n_pairs`` draw groups of every prompt.

    ``draws[x]`` is an [N, n_max] array of response indices drawn from pi_0 (:func:`sample_draws`), so,
    as in the workflow, the pairs of different n come from the same draws, and fewer pairs are a prefix
    of more. ``ties="drop"`` drops the groups whose n draws are all one response (pairs.select_pairs).
    """
    if ties not in ("drop", "keep"):
        raise ValueError(f"ties must be 'drop' or 'keep', got {ties!r}")
    k_max = max(world.sizes)
    prompts, bests, worsts = [], [], []
    for x, group in enumerate(draws):
        first = group[:n_pairs, :n]
        r = world.rewards[x][first]
        rows = np.arange(len(first))
        best, worst = first[rows, r.argmax(axis=1)], first[rows, r.argmin(axis=1)]
        keep = best != worst if ties == "drop" else np.ones(len(best), dtype=bool)
        prompts.append(np.full(keep.sum(), x))
        bests.append(best[keep])
        worsts.append(worst[keep])
    return _compress(np.concatenate(prompts), np.concatenate(bests), np.concatenate(worsts), k_max)


def sample_draws(world: ExactWorld, n_groups: int, n_max: int, seed: int) -> list[np.ndarray]:
    """[n_groups, n_max] i.i.d. draws from pi_0 per prompt (one generator, prompt after prompt)."""
    rng = np.random.default_rng(seed)
    return [rng.choice(len(p), size=(n_groups, n_max), p=p) for p in world.p0]


def exact_pairs(world: ExactWorld, n: int, ties: str) -> Pairs:
    """The infinite-data limit: every (best, worst) pair weighted by its exact probability.

    Prompts weigh equally; a prompt's optimum does not depend on its weight (its logits are its own), so
    this matches sampled pairs whatever ties remove. ``ties="drop"`` conditions every prompt on "no tie",
    as dropping tied groups does in the limit.
    """
    prompts, bests, worsts, weights = [], [], [], []
    for x, (p0, r) in enumerate(zip(world.p0, world.rewards, strict=True)):
        joint = best_worst_joint(p0, r, n)
        if ties == "drop":
            np.fill_diagonal(joint, 0.0)
        elif ties != "keep":
            raise ValueError(f"ties must be 'drop' or 'keep', got {ties!r}")
        b, w = np.nonzero(joint > 0)
        prompts.append(np.full(len(b), x))
        bests.append(b)
        worsts.append(w)
        weights.append(joint[b, w] / joint.sum())
    return Pairs(*(np.concatenate(a) for a in (prompts, bests, worsts, weights)))


# ----------------------------------------------------------------------------------------------
# Training a tabular policy with the project's losses


def _pair_losses(loss: str, pc: Tensor, pr: Tensor, rc: Tensor, rr: Tensor, beta: float,
                 alpha: float) -> Tensor:
    """Per-pair losses [B] from bonbon.losses: the one place this module calls the project's losses.

    sft is the SFT loss -log pi(best), BoNBoN with alpha = 1.
    """
    if loss == "sft":  # SFT on the best: -log pi(best), bonbon's alpha = 1
        return LOSSES["sft"](pc)[0]
    if loss == "bonbon":
        return LOSSES["bonbon"](pc, pr, rc, rr, beta=beta, alpha=alpha)[0]
    if loss in ("ipo", "dpo"):
        return LOSSES[loss](pc, pr, rc, rr, beta=beta)[0]
    raise ValueError(f"unknown loss {loss!r}; known: {', '.join(LOSS_NAMES)}")


def _padded_log_p0(world: ExactWorld) -> Tensor:
    k_max = max(world.sizes)
    out = torch.full((len(world.logits), k_max), -math.inf, dtype=torch.float64)
    for x, lp in enumerate(world.log_p0):
        out[x, : len(lp)] = torch.from_numpy(lp)
    return out


@dataclass
class Fit:
    """A trained tabular policy: log-probs per prompt, and how the optimisation ended."""

    log_probs: list[np.ndarray]
    loss: float
    grad_norm: float  # max-norm of the gradient of the mean loss w.r.t. the free logits, at the end
    iterations: int
    mean_margin: float  # weighted mean of h over the training pairs
    zeroed: int  # responses set to probability 0 because the loss's infimum sends them there


def _zeroed_responses(world: ExactWorld, pairs: Pairs, loss: str, alpha: float) -> np.ndarray:
    """[P, K_max] mask of responses whose logit the loss's infimum sends to -inf.

    The SFT term -log pi(best) lowers, through the softmax, every response that is never a best; where
    nothing else holds it (sft: never a best; bonbon with alpha > 0: in no pair at all) its optimum is
    probability 0. Fixing these at -inf gives the exact minimiser instead of logits that run down a
    flat valley until the optimiser stops (the policy's other probabilities are the same either way).
    """
    shape = (len(world.sizes), max(world.sizes))
    in_pair, is_best = np.zeros(shape, dtype=bool), np.zeros(shape, dtype=bool)
    positive = pairs.weight > 0
    is_best[pairs.prompt[positive], pairs.best[positive]] = True
    in_pair[pairs.prompt[positive], pairs.best[positive]] = True
    in_pair[pairs.prompt[positive], pairs.worst[positive]] = True
    if loss == "sft" or (loss == "bonbon" and alpha == 1.0):
        return ~is_best
    if loss == "bonbon" and alpha > 0:
        return ~in_pair
    return np.zeros(shape, dtype=bool)  # ipo: unpaired responses keep pi_0's ratio; dpo: no minimiser


def fit_policy(world: ExactWorld, pairs: Pairs, loss: str, beta: float, alpha: float = 0.0,
               max_iter: int = 400, tolerance: float = 1e-9) -> Fit:
    """Minimise the weighted mean pair loss over the logits (full batch, L-BFGS, float64).

    Logits start at pi_0's; responses a prompt does not have, and those the loss sends to probability 0
    (:func:`_zeroed_responses`), are fixed at -inf. Stops when the gradient's max-norm is below
    ``tolerance``, when the loss stops changing in float64, or after ``max_iter`` iterations
    (Fit.grad_norm and Fit.iterations tell where it ended). DPO has no minimiser on
    best/worst pairs (every pair points up the reward order, so the margins can grow for ever): its fit
    is where the optimiser stopped, on a loss that is still falling towards 0.
    """
    log_p0 = _padded_log_p0(world)
    zeroed = torch.from_numpy(_zeroed_responses(world, pairs, loss, alpha)) & torch.isfinite(log_p0)
    free = torch.isfinite(log_p0) & ~zeroed
    theta = torch.nn.Parameter(torch.where(free, log_p0, torch.zeros_like(log_p0)))
    prompt = torch.from_numpy(pairs.prompt).long()
    best = torch.from_numpy(pairs.best).long()
    worst = torch.from_numpy(pairs.worst).long()
    weight = torch.from_numpy(pairs.weight / pairs.total)
    rc, rr = log_p0[prompt, best], log_p0[prompt, worst]

    def objective() -> tuple[Tensor, Tensor]:
        logp = torch.log_softmax(theta.masked_fill(~free, -math.inf), dim=1)
        pc, pr = logp[prompt, best], logp[prompt, worst]
        h = (pc - rc) - (pr - rr)
        # only sft zeroes a response that is some pair's worst; it ignores the worst, but bonbon's
        # 0 * (IPO term at h = inf) would be NaN, so such a worst gets its reference log-prob instead
        pr = torch.where(torch.isfinite(pr), pr, rr)
        return torch.sum(weight * _pair_losses(loss, pc, pr, rc, rr, beta, alpha)), h

    optimizer = torch.optim.LBFGS([theta], lr=1.0, max_iter=max_iter, tolerance_grad=tolerance,
                                  tolerance_change=1e-15, history_size=50, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        optimizer.zero_grad()
        value, _ = objective()
        value.backward()
        theta.grad.masked_fill_(~free, 0.0)  # fixed logits
        return value

    optimizer.step(closure)
    value, h = objective()
    (grad,) = torch.autograd.grad(value, theta)
    logp = torch.log_softmax(theta.detach().masked_fill(~free, -math.inf), dim=1).numpy()
    finite_h = torch.isfinite(h)  # sft's zeroed worsts have h = inf
    return Fit(
        log_probs=[logp[x, :k] for x, k in enumerate(world.sizes)],
        loss=value.item(),
        grad_norm=float(grad[free].abs().max()),
        iterations=int(optimizer.state[theta].get("n_iter", 0)),
        mean_margin=float(torch.sum(weight[finite_h] * h.detach()[finite_h]) / torch.sum(weight[finite_h])),
        zeroed=int(zeroed.sum()),
    )


# ----------------------------------------------------------------------------------------------
# The study


def policy_metrics(world: ExactWorld, log_probs: list[np.ndarray], n: int) -> dict[str, float]:
    """Prompt-averaged exact kl_to_bon = KL(pi_n || pi), kl_reverse_to_bon = KL(pi || pi_n), win rate
    and kl_from_reference = KL(pi || pi_0)."""
    rows = []
    for lp, p0, lp0, r in zip(log_probs, world.p0, world.log_p0, world.rewards, strict=True):
        with np.errstate(divide="ignore"):  # log 0 = -inf: a response pi_n never returns
            log_bon = np.log(best_of_n_probs(p0, r, n))
        rows.append((kl_divergence(log_bon, lp), kl_divergence(lp, log_bon),
                     win_rate(np.exp(lp), p0, r), kl_divergence(lp, lp0)))
    kl_to_bon, kl_reverse, win, kl_ref = np.mean(rows, axis=0)
    return {"kl_to_bon": kl_to_bon, "kl_reverse_to_bon": kl_reverse, "win_rate": win,
            "kl_from_reference": kl_ref}


def _loss_grid(n: int, ties: str, alphas: tuple[float, ...], dpo_betas: tuple[float | str, ...],
               discrete_beta: float) -> list[tuple[str, float, str, float]]:
    """(loss, beta, beta_rule, alpha) to train for one n and tie rule.

    Kept ties have margin h = 0 identically: a constant IPO/DPO loss with no gradient, so only the
    losses with an SFT term are trained again with ties kept: SFT, and BoNBoN at the smallest alpha
    (the others move as little; one shows it).
    """
    star = beta_star(n)
    if ties == "keep":
        return [("sft", star, "beta_star", 1.0)] + [("bonbon", star, "beta_star", min(alphas))] * bool(alphas)
    grid = [("sft", star, "beta_star", 1.0)] + [("bonbon", star, "beta_star", a) for a in alphas]
    grid += [("ipo", star, "beta_star", np.nan), ("ipo", discrete_beta, "bon_margin", np.nan)]
    return grid + [("dpo", star, "beta_star", np.nan) if b == "auto" else ("dpo", float(b), "fixed", np.nan)
                   for b in dpo_betas]


def run_study(seed: int = 0, n_prompts: int = 6, min_responses: int = 6, max_responses: int = 12,
              logit_scale: float = 1.0, n_values: tuple[int, ...] = (2, 4, 8),
              pair_counts: tuple[int, ...] = (100, 1000, 10000), population: bool = True,
              alphas: tuple[float, ...] = (0.005, 0.05, 0.2),
              dpo_betas: tuple[float | str, ...] = (0.1, "auto"),
              ties: tuple[str, ...] = ("drop", "keep"), max_iter: int = 500,
              tolerance: float = 1e-9) -> pd.DataFrame:
    """Train every loss for every n, tie rule and pair count (and the exact pair distribution), and measure.

    One row per (n, ties, loss, beta, alpha, n_pairs): ``n_pairs`` is the number of n-draw groups per
    prompt, -1 for the exact pair distribution (the infinite-data limit); ``pairs_used`` the pairs left
    after tied groups were dropped, over all prompts. Metrics are exact and prompt-averaged
    (:func:`policy_metrics`). ``beta_rule``: beta_star = beta*(n); bon_margin = 1 / (2 x pi_n's own
    mean margin in this world); fixed = a configured value. Rows with ``loss = "best_of_n"`` (ties
    keep: pi_n) and ``"best_of_n_no_tie"`` (ties drop: what SFT on tie-free pairs aims at) hold the
    targets; every row carries the continuous values and the exact margins of pi_n for its n.
    """
    world = make_world(seed, n_prompts, min_responses, max_responses, logit_scale)
    draws = sample_draws(world, max(pair_counts), max(n_values), seed + 1) if pair_counts else []
    prompts = list(zip(world.p0, world.rewards, strict=True))
    rows = []
    for n in n_values:
        margins = {t: float(np.mean([bon_margin(p, r, n, t) for p, r in prompts])) for t in ("drop", "keep")}
        base = {"n": n, "target_margin": target_margin(n), "bon_margin": margins["drop"],
                "bon_margin_all_groups": margins["keep"], "theory_win_rate": bon_win_rate(n),
                "theory_kl": bon_kl(n), "tie_probability": float(np.mean([np.sum(p**n) for p, _ in prompts]))}
        with np.errstate(divide="ignore"):
            targets = {"keep": [np.log(best_of_n_probs(p, r, n)) for p, r in prompts],
                       "drop": [np.log(best_of_n_no_tie_probs(p, r, n)) for p, r in prompts]}
        for name, t in (("best_of_n", "keep"), ("best_of_n_no_tie", "drop")):
            rows.append({**base, "ties": t, "loss": name, "n_pairs": 0,
                         **policy_metrics(world, targets[t], n)})
        for t in ties:
            pair_sets = [(count, draw_pairs(world, draws, n, count, t)) for count in pair_counts]
            if population:
                pair_sets.append((-1, exact_pairs(world, n, t)))
            for count, pairs in pair_sets:
                for loss, beta, rule, alpha in _loss_grid(n, t, tuple(alphas), tuple(dpo_betas),
                                                          1.0 / (2.0 * margins["drop"])):
                    fit = fit_policy(world, pairs, loss, beta, 0.0 if np.isnan(alpha) else alpha,
                                     max_iter=max_iter, tolerance=tolerance)
                    rows.append({**base, "ties": t, "loss": loss, "beta": beta, "beta_rule": rule,
                                 "alpha": alpha, "n_pairs": count,
                                 "pairs_used": pairs.total if count > 0 else np.nan,
                                 **policy_metrics(world, fit.log_probs, n), "train_loss": fit.loss,
                                 "grad_norm": fit.grad_norm, "iterations": fit.iterations,
                                 "mean_margin": fit.mean_margin, "zeroed": fit.zeroed})
    return _table(rows, world="random")


COLUMNS = ["world", "n", "ties", "loss", "beta", "beta_rule", "alpha", "n_pairs", "pairs_used", "kl_to_bon",
               "kl_reverse_to_bon", "win_rate", "kl_from_reference", "mean_margin", "train_loss", "grad_norm",
               "iterations", "zeroed", "bon_margin", "bon_margin_all_groups", "target_margin",
               "theory_win_rate", "theory_kl", "tie_probability", "has_minimiser"]


def _table(rows: list[dict], world: str) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    frame["world"] = world
    # DPO's loss on best/worst pairs has no minimiser: its rows are where the optimiser stopped
    frame["has_minimiser"] = frame["loss"] != "dpo"
    return frame.reindex(columns=COLUMNS)


def limit_study(sizes: tuple[int, ...] = (16, 64), n_values: tuple[int, ...] = (2, 4, 8),
                alphas: tuple[float, ...] = (0.005, 0.05, 0.2), max_iter: int = 1000,
                tolerance: float = 1e-9) -> pd.DataFrame:
    """The infinite-data optimum of each loss as the response set grows fine-grained.

    One prompt with K equally likely responses (rewards = their rank), trained on the exact pair
    distribution (ties dropped): as K grows, pi_n, its margin and every loss's optimum approach the
    continuous-reward case that beta*(n) is derived for: does the IPO term's optimum approach pi_n
    there? Same columns as :func:`run_study`, world
    ``uniform-K{K}``, n_pairs = -1.
    """
    frames = []
    for k in sizes:
        world = ExactWorld([np.zeros(k)], [np.arange(k, dtype=float)])
        p0, r = world.p0[0], world.rewards[0]
        rows = []
        for n in n_values:
            base = {"n": n, "ties": "drop", "n_pairs": -1, "target_margin": target_margin(n),
                    "bon_margin": bon_margin(p0, r, n, "drop"),
                    "bon_margin_all_groups": bon_margin(p0, r, n, "keep"),
                    "theory_win_rate": bon_win_rate(n), "theory_kl": bon_kl(n),
                    "tie_probability": float(np.sum(p0**n))}
            rows.append({**base, "loss": "best_of_n", "ties": "keep", "n_pairs": 0,
                         **policy_metrics(world, [np.log(best_of_n_probs(p0, r, n))], n)})
            pairs = exact_pairs(world, n, "drop")
            # no sft here: its exact optimum is pi_n itself (run_study shows it), and fitting pi_n's
            # tiny probabilities (Q^8 near the bottom) takes L-BFGS most of this study's time
            for loss, alpha in [("bonbon", a) for a in alphas] + [("ipo", np.nan)]:
                fit = fit_policy(world, pairs, loss, beta_star(n), 0.0 if np.isnan(alpha) else alpha,
                                 max_iter=max_iter, tolerance=tolerance)
                rows.append({**base, "loss": loss, "beta": beta_star(n), "beta_rule": "beta_star",
                             "alpha": alpha,
                             **policy_metrics(world, fit.log_probs, n), "train_loss": fit.loss,
                             "grad_norm": fit.grad_norm, "iterations": fit.iterations,
                             "mean_margin": fit.mean_margin, "zeroed": fit.zeroed})
        frames.append(_table(rows, world=f"uniform-K{k}"))
    return pd.concat(frames, ignore_index=True)


def exact_summary(table: pd.DataFrame) -> pd.DataFrame:
    """The report's short table: pi_n, and every trained configuration at the largest pair count and on the
    exact pair distribution (n_pairs = -1), with the continuous curve's win rate at its KL."""
    trained = table[~table["loss"].isin(["best_of_n", "best_of_n_no_tie"])]
    largest = trained.groupby(["world", "n"])["n_pairs"].transform("max")
    keep = table["loss"].isin(["best_of_n", "best_of_n_no_tie"]) | table.index.isin(
        trained.index[(trained["n_pairs"] == -1) | (trained["n_pairs"] == largest)])
    out = table[keep].copy()
    out["method"] = [_method(r) if r["loss"] not in ("best_of_n", "best_of_n_no_tie") else r["loss"]
                     for _, r in out.iterrows()]
    out["curve_win_rate"] = theory_win_rate_at_kl(out["kl_from_reference"].to_numpy(float))
    columns = ["world", "n", "method", "n_pairs", "kl_reverse_to_bon", "kl_to_bon", "win_rate",
               "curve_win_rate", "kl_from_reference", "mean_margin", "bon_margin", "target_margin",
               "grad_norm"]
    return out[columns].reset_index(drop=True)


# ----------------------------------------------------------------------------------------------
# The figure


def _method(row: pd.Series) -> str:
    """A readable name for a trained configuration: sft, bonbon a=0.05, ipo b*, dpo b=0.1, ..."""
    if row["loss"] == "sft":
        return "sft (ties kept)" if row["ties"] == "keep" else "sft"
    if row["loss"] == "bonbon":
        return f"bonbon α={row['alpha']:g}" + (" (ties kept)" if row["ties"] == "keep" else "")
    rule = {"beta_star": "β*", "bon_margin": "β from π_n's margin"}.get(row["beta_rule"],
                                                                       f"β={row['beta']:g}")
    return f"{row['loss']} {rule}"


KL_FLOOR = 1e-7  # where the figure draws a KL of (numerically) 0


def _method_colours(methods: list[str]) -> dict[str, str]:
    # one hue per loss family, shades within it, so the many BoNBoN alphas read as one family
    families = {"sft": ["black", "0.5"], "bonbon": ["#08519c", "#3182bd", "#6baed6", "#9ecae1"],
                "ipo": ["#cb181d", "#fc9272"], "dpo": ["#238b45", "#74c476", "#a1d99b"]}
    used: dict[str, int] = {}
    out = {}
    for m in methods:
        family = m.split()[0]
        shades = families.get(family, ["0.3"])
        out[m] = shades[used.get(family, 0) % len(shades)]
        used[family] = used.get(family, 0) + 1
    return out


def plot_exact_world(table: pd.DataFrame, path: str | Path) -> Figure:
    """Per n, KL(pi_theta || pi_n) against pairs per prompt for every trained configuration (the exact
    pair distribution drawn at the right, as "∞"; a KL below KL_FLOOR is drawn at it); last panel,
    (KL from pi_0, win rate) of pi_n and of every loss's infinite-data optimum, with the continuous
    best-of-n curve. Artists carry gids
    ``curve:{n}:{method}``, ``limit:{n}:{method}``, ``bon:{n}`` and ``theory``."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    rows = table[table["world"] == "random"].copy()
    trained = rows[~rows["loss"].isin(["best_of_n", "best_of_n_no_tie"])].copy()
    # bonbon with ties kept lies on its ties-dropped line (a tie moves only the small SFT term): table only
    trained = trained[(trained["ties"] == "drop") | (trained["loss"] == "sft")]
    trained["method"] = trained.apply(_method, axis=1)
    order = {"sft": 0, "bonbon": 1, "ipo": 2, "dpo": 3}
    trained["_order"] = trained["loss"].map(order)
    methods = list(dict.fromkeys(trained.sort_values(["_order", "ties", "alpha", "beta_rule"])["method"]))
    colours = _method_colours(methods)
    n_values = sorted(rows["n"].unique())
    counts = sorted(c for c in trained["n_pairs"].unique() if c > 0)
    infinity = counts[-1] * 4 if counts else 1.0
    fig = Figure(figsize=(4.0 * len(n_values) + 5.5, 4.6), layout="constrained")
    for i, n in enumerate(n_values):
        ax = fig.add_subplot(1, len(n_values) + 1, i + 1, sharey=fig.axes[0] if i else None)
        for method, group in trained[trained["n"] == n].groupby("method", sort=False):
            x = np.where(group["n_pairs"] > 0, group["n_pairs"], infinity).astype(float)
            group, x = group.iloc[np.argsort(x)], np.sort(x)  # the limit (n_pairs = -1) last, at "∞"
            y = np.maximum(group["kl_reverse_to_bon"].to_numpy(float), KL_FLOOR)  # exact zeros on a log axis
            dashed = not bool(group["has_minimiser"].iloc[0])
            ax.plot(x, y, marker="o", markersize=3, color=colours[method], linestyle="--" if dashed else "-",
                    linewidth=1, gid=f"curve:{n}:{method}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks([*counts, infinity], [*(f"{c:g}" for c in counts), "∞"])
        ax.set_xlabel("pairs per prompt (n-draw groups)")
        ax.set_ylabel("KL(π_θ ‖ π_n) (nats)" if i == 0 else "")
        ax.set_title(f"n = {n}: distance to best-of-n", fontsize=10)
        ax.grid(alpha=0.3, which="both")
    ax = fig.add_subplot(1, len(n_values) + 1, len(n_values) + 1)
    grid_n = np.linspace(1, max(n_values) * 1.5, 200)
    ax.plot(bon_kl(grid_n), bon_win_rate(grid_n), color="0.3", linewidth=1, gid="theory",
            label="continuous best-of-n: n/(n+1) vs log n − (n−1)/n")
    markers = {n: m for n, m in zip(n_values, "os^Dv<>p", strict=False)}
    for n in n_values:
        bon = rows[(rows["n"] == n) & (rows["loss"] == "best_of_n")].iloc[0]
        ax.scatter([bon["kl_from_reference"]], [bon["win_rate"]], marker="*", s=160, color="gold",
                   edgecolors="black", linewidths=0.6, zorder=5, gid=f"bon:{n}")
        ax.annotate(f"π_{n}", (bon["kl_from_reference"], bon["win_rate"]), xytext=(6, -10),
                    textcoords="offset points", fontsize=8)
        limit = trained[(trained["n"] == n) & (trained["n_pairs"] == -1)]
        for _, row in limit.iterrows():
            ax.scatter([row["kl_from_reference"]], [row["win_rate"]], marker=markers[n], s=30,
                       color=colours[row["method"]], edgecolors="black", linewidths=0.4, zorder=4,
                       gid=f"limit:{n}:{row['method']}")
    ax.set_xlabel("KL(π ‖ π_0) (nats)")
    ax.set_ylabel("win rate against π_0")
    ax.set_title("infinite-data optimum of each loss", fontsize=10)
    ax.grid(alpha=0.3)
    handles = [Line2D([], [], color=colours[m], marker="o", markersize=4,
                      linestyle="--" if m.startswith("dpo") else "-", label=m) for m in methods]
    handles += [Line2D([], [], linestyle="none", marker="*", markersize=11, color="gold",
                       markeredgecolor="black", label="π_n (exact)")]
    handles += [Line2D([], [], linestyle="none", marker=markers[n], color="0.6", label=f"n = {n}")
                for n in n_values]
    handles += [Line2D([], [], color="0.3", label="continuous best-of-n")]
    fig.legend(handles=handles, loc="outside right center", fontsize=7)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, format="png")
    return fig
