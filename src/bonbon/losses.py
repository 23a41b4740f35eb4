"""Alignment losses (DPO, IPO, BoNBoN) and SFT as small pure torch functions with one interface.

In the style of the original DPO code (Rafailov et al., ``preference_loss``), every loss is

    fn(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps,
       **options) -> (losses [B], metrics)

on 1-D tensors of per-example log-probs SUMMED over response tokens (not length-averaged). ``losses``
are per example, not reduced: the caller's mean keeps gradient accumulation exact. ``metrics`` are
named, detached per-example [B] tensors that training logs as batch means: ``sft`` (-pi_c) from every
loss and, from the pair losses, ``chosen_reward`` and ``rejected_reward`` (beta (pi - ref)), ``margin``
(h), ``reward_accuracy`` (1 where chosen_reward > rejected_reward), plus ``ipo`` from ipo and bonbon.
Training picks the function by name from :data:`LOSSES`.

Notation: pi_c, pi_r = policy log-probs of the chosen / rejected response, ref_c, ref_r = the same
under the frozen reference, and the log-ratio margin

    h = (pi_c - ref_c) - (pi_r - ref_r).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["LOSSES", "bonbon_loss", "dpo_loss", "ipo_loss", "margin", "sft_loss"]

Metrics = dict[str, Tensor]


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


def _pair_metrics(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    reference_chosen_logps: Tensor,
    reference_rejected_logps: Tensor,
    beta: float,
    h: Tensor,
) -> Metrics:
    # implicit rewards beta (pi - ref); logged, never differentiated
    chosen = beta * (policy_chosen_logps - reference_chosen_logps).detach()
    rejected = beta * (policy_rejected_logps - reference_rejected_logps).detach()
    return {
        "sft": -policy_chosen_logps.detach(),
        "chosen_reward": chosen,
        "rejected_reward": rejected,
        "margin": h.detach(),
        "reward_accuracy": (chosen > rejected).float(),
    }


def dpo_loss(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    reference_chosen_logps: Tensor,
    reference_rejected_logps: Tensor,
    *,
    beta: float,
    label_smoothing: float = 0.0,
    reference_free: bool = False,
) -> tuple[Tensor, Metrics]:
    """DPO loss, conservative variant with label smoothing eps:

        loss = -(1 - eps) log sigmoid(beta h) - eps log sigmoid(-beta h),
        h = (pi_c - ref_c) - (pi_r - ref_r).

    eps = 0 is plain DPO; eps in (0, 0.5) assumes labels are flipped with probability eps.
    reference_free=True treats the reference log-probs as 0 (h = pi_c - pi_r; rewards beta * pi).
    """
    _check_beta(beta)
    if not 0.0 <= label_smoothing < 0.5:
        raise ValueError(f"label_smoothing must be in [0, 0.5), got label_smoothing={label_smoothing}")
    if reference_free:
        reference_chosen_logps = torch.zeros_like(reference_chosen_logps)
        reference_rejected_logps = torch.zeros_like(reference_rejected_logps)
    logps = (policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps)
    h = margin(*logps)
    # logsigmoid rather than log(sigmoid()): finite for large |beta h|
    losses = -(1.0 - label_smoothing) * F.logsigmoid(beta * h) - label_smoothing * F.logsigmoid(-beta * h)
    return losses, _pair_metrics(*logps, beta, h)


def ipo_loss(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    reference_chosen_logps: Tensor,
    reference_rejected_logps: Tensor,
    *,
    beta: float,
) -> tuple[Tensor, Metrics]:
    """IPO loss on SUMMED log-probs: loss = (h - 1/(2 beta))^2, h = (pi_c - ref_c) - (pi_r - ref_r).

    Not TRL's "ipo", which uses length-normalised (per-token mean) log-ratios: a different objective
    whose beta does not match beta*(n) of best-of-n. Metrics add ``ipo`` (the loss itself).
    """
    _check_beta(beta)
    logps = (policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps)
    h = margin(*logps)
    losses = (h - 1.0 / (2.0 * beta)) ** 2
    return losses, {**_pair_metrics(*logps, beta, h), "ipo": losses.detach()}


def bonbon_loss(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    reference_chosen_logps: Tensor,
    reference_rejected_logps: Tensor,
    *,
    beta: float,
    alpha: float = 0.005,
) -> tuple[Tensor, Metrics]:
    """BoNBoN loss: alpha * SFT + (1 - alpha) * IPO, per example:

        sft  = -pi_c                       (negative log-likelihood of the best-of-n sample)
        ipo  = (h - 1/(2 beta))^2,  h = (pi_c - ref_c) - (pi_r - ref_r)
        loss = alpha * sft + (1 - alpha) * ipo

    chosen = best of n, rejected = worst of n, beta usually beta*(n) = 1 / (2 (n-1) H_{n-1}).
    The SFT term reuses policy_chosen_logps: no second policy forward pass.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got alpha={alpha}")
    ipo, metrics = ipo_loss(
        policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps,
        beta=beta
    )
    sft = -policy_chosen_logps
    return alpha * sft + (1.0 - alpha) * ipo, metrics


def sft_loss(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor | None = None,
    reference_chosen_logps: Tensor | None = None,
    reference_rejected_logps: Tensor | None = None,
) -> tuple[Tensor, Metrics]:
    """Supervised fine-tuning: loss = -pi_c, the negative log-likelihood of the chosen response summed
    over its T tokens (rejected and reference log-probs are not used and may be None).

    Per example, like every loss here; training reduces it per token over the micro-batch,
    sum_i loss_i / sum_i T_i (the usual language-model objective), where the pair losses take the mean.
    """
    _check_logps(policy_chosen_logps)
    losses = -policy_chosen_logps
    return losses, {"sft": losses.detach()}


LossFn = Callable[..., tuple[Tensor, Metrics]]
LOSSES: dict[str, LossFn] = {"dpo": dpo_loss, "ipo": ipo_loss, "bonbon": bonbon_loss, "sft": sft_loss}
