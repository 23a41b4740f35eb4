"""Alignment losses (DPO, IPO, BoNBoN) as small pure torch functions.

In the style of the original DPO code (Rafailov et al., ``preference_loss``): every input is a 1-D
tensor of per-example log-probs SUMMED over response tokens (not length-averaged), and every function
returns per-example losses of shape [B] (not reduced) plus what the training loop logs. Reduction
(mean over the batch) is left to the caller so that gradient accumulation stays exact.

Notation: pi_c, pi_r = policy log-probs of the chosen / rejected response, ref_c, ref_r = the same
under the frozen reference, and the log-ratio margin

    h = (pi_c - ref_c) - (pi_r - ref_r).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "LOSSES",
    "bonbon_loss",
    "compute_loss",
    "dpo_loss",
    "ipo_loss",
    "margin",
]


def _check_beta(beta: float) -> None:
    if not beta > 0:  # also rejects NaN
        raise ValueError(f"beta must be > 0, got beta={beta}")


def _check_logps(*logps: Tensor) -> None:
    # mismatched shapes would silently broadcast [B] against [B, 1] into a [B, B] loss
    shape = logps[0].shape
    if len(shape) != 1:
        raise ValueError(f"log-probs must be 1-D [B] tensors (summed over tokens), got shape {tuple(shape)}")
    for t in logps[1:]:
        if t.shape != shape:
            raise ValueError(
                f"all log-prob tensors must have the same shape, got {tuple(shape)} and {tuple(t.shape)}"
            )


def margin(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    reference_chosen_logps: Tensor,
    reference_rejected_logps: Tensor,
) -> Tensor:
    """Log-ratio margin h = (pi_c - ref_c) - (pi_r - ref_r), per example, shape [B]."""
    _check_logps(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps)
    return (policy_chosen_logps - reference_chosen_logps) - (policy_rejected_logps - reference_rejected_logps)


def _implicit_rewards(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    reference_chosen_logps: Tensor,
    reference_rejected_logps: Tensor,
    beta: float,
) -> tuple[Tensor, Tensor]:
    # detached: they are logged, never differentiated
    chosen = beta * (policy_chosen_logps - reference_chosen_logps).detach()
    rejected = beta * (policy_rejected_logps - reference_rejected_logps).detach()
    return chosen, rejected


def dpo_loss(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    reference_chosen_logps: Tensor,
    reference_rejected_logps: Tensor,
    beta: float,
    label_smoothing: float = 0.0,
    reference_free: bool = False,
) -> tuple[Tensor, Tensor, Tensor]:
    """DPO loss, conservative variant with label smoothing eps:

        loss = -(1 - eps) log sigmoid(beta h) - eps log sigmoid(-beta h),
        h = (pi_c - ref_c) - (pi_r - ref_r).

    eps = 0 is plain DPO; eps in (0, 0.5) assumes labels are flipped with probability eps.
    reference_free=True treats the reference log-probs as 0 (h = pi_c - pi_r; rewards beta * pi).

    Returns (losses [B], chosen_rewards [B], rejected_rewards [B]) with implicit rewards
    beta (pi - ref), detached.
    """
    _check_beta(beta)
    if not 0.0 <= label_smoothing < 0.5:
        raise ValueError(f"label_smoothing must be in [0, 0.5), got label_smoothing={label_smoothing}")
    if reference_free:
        reference_chosen_logps = torch.zeros_like(reference_chosen_logps)
        reference_rejected_logps = torch.zeros_like(reference_rejected_logps)
    h = margin(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps)
    # logsigmoid rather than log(sigmoid()): finite for large |beta h|
    losses = -(1.0 - label_smoothing) * F.logsigmoid(beta * h) - label_smoothing * F.logsigmoid(-beta * h)
    chosen_rewards, rejected_rewards = _implicit_rewards(
        policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps, beta
    )
    return losses, chosen_rewards, rejected_rewards


def ipo_loss(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    reference_chosen_logps: Tensor,
    reference_rejected_logps: Tensor,
    beta: float,
) -> tuple[Tensor, Tensor, Tensor]:
    """IPO loss on SUMMED log-probs: loss = (h - 1/(2 beta))^2, h = (pi_c - ref_c) - (pi_r - ref_r).

    Not TRL's "ipo", which uses length-normalised (per-token mean) log-ratios: a different objective
    whose beta does not match beta*(n) of best-of-n.

    Returns (losses [B], chosen_rewards [B], rejected_rewards [B]), rewards beta (pi - ref), detached.
    """
    _check_beta(beta)
    h = margin(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps)
    losses = (h - 1.0 / (2.0 * beta)) ** 2
    chosen_rewards, rejected_rewards = _implicit_rewards(
        policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps, beta
    )
    return losses, chosen_rewards, rejected_rewards


def bonbon_loss(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    reference_chosen_logps: Tensor,
    reference_rejected_logps: Tensor,
    beta: float,
    alpha: float = 0.005,
) -> tuple[Tensor, dict[str, Tensor]]:
    """BoNBoN loss: alpha * SFT + (1 - alpha) * IPO, per example:

        sft  = -pi_c                       (negative log-likelihood of the best-of-n sample)
        ipo  = (h - 1/(2 beta))^2,  h = (pi_c - ref_c) - (pi_r - ref_r)
        loss = alpha * sft + (1 - alpha) * ipo

    chosen = best of n, rejected = worst of n, beta usually beta*(n) = 1 / (2 (n-1) H_{n-1}).
    The SFT term reuses policy_chosen_logps: no second policy forward pass.

    Returns (losses [B], metrics) with per-example metrics 'sft', 'ipo', 'chosen_rewards',
    'rejected_rewards', 'margin' (h); all metrics are detached.
    """
    _check_beta(beta)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got alpha={alpha}")
    ipo, chosen_rewards, rejected_rewards = ipo_loss(
        policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps, beta
    )
    sft = -policy_chosen_logps
    losses = alpha * sft + (1.0 - alpha) * ipo
    h = margin(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps)
    metrics = {
        "sft": sft.detach(),
        "ipo": ipo.detach(),
        "chosen_rewards": chosen_rewards,
        "rejected_rewards": rejected_rewards,
        "margin": h.detach(),
    }
    return losses, metrics


LossFn = Callable[..., tuple[Tensor, dict[str, Tensor]]]


def _dpo(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    reference_chosen_logps: Tensor,
    reference_rejected_logps: Tensor,
    beta: float,
    label_smoothing: float = 0.0,
    reference_free: bool = False,
) -> tuple[Tensor, dict[str, Tensor]]:
    losses, chosen_rewards, rejected_rewards = dpo_loss(
        policy_chosen_logps,
        policy_rejected_logps,
        reference_chosen_logps,
        reference_rejected_logps,
        beta,
        label_smoothing=label_smoothing,
        reference_free=reference_free,
    )
    if reference_free:  # the margin the loss saw: references treated as 0
        h = (policy_chosen_logps - policy_rejected_logps).detach()
    else:
        h = margin(
            policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps
        ).detach()
    return losses, {"chosen_rewards": chosen_rewards, "rejected_rewards": rejected_rewards, "margin": h}


def _ipo(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    reference_chosen_logps: Tensor,
    reference_rejected_logps: Tensor,
    beta: float,
) -> tuple[Tensor, dict[str, Tensor]]:
    losses, chosen_rewards, rejected_rewards = ipo_loss(
        policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps, beta
    )
    h = margin(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps)
    return losses, {
        "chosen_rewards": chosen_rewards,
        "rejected_rewards": rejected_rewards,
        "margin": h.detach(),
    }


# Uniform interface: fn(pi_c, pi_r, ref_c, ref_r, beta, **options) -> (losses [B], metrics dict)
LOSSES: dict[str, LossFn] = {
    "dpo": _dpo,
    "ipo": _ipo,
    "bonbon": bonbon_loss,
}


def compute_loss(
    name: str,
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    reference_chosen_logps: Tensor,
    reference_rejected_logps: Tensor,
    beta: float,
    **options: float | bool,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Dispatch to the loss called ``name`` ('dpo', 'ipo' or 'bonbon') with a uniform return value.

    options are passed on: label_smoothing / reference_free for 'dpo', alpha for 'bonbon'; an option
    the loss does not take raises TypeError. Returns (losses [B], metrics dict of detached [B] tensors,
    always with 'chosen_rewards', 'rejected_rewards' and 'margin').
    """
    try:
        fn = LOSSES[name]
    except KeyError:
        raise ValueError(f"unknown loss {name!r}; known losses: {', '.join(sorted(LOSSES))}") from None
    return fn(
        policy_chosen_logps,
        policy_rejected_logps,
        reference_chosen_logps,
        reference_rejected_logps,
        beta,
        **options,
    )
