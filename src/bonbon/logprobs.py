"""Log-probabilities of responses under a causal LM: the one function training, the reference pass
and KL evaluation all share, so that the three agree to the last token.

Conventions: ``input_ids``, ``attention_mask`` and ``response_mask`` are [B, T] and aligned;
``response_mask`` marks the response tokens (whose log-probs are counted) and ``attention_mask``
marks real tokens. Padding may sit on the left, the right, or in between prompt and response.
"""

from __future__ import annotations

import torch

__all__ = ["position_ids_from_mask", "sequence_logps", "token_logps"]


def position_ids_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position of each token among the real tokens of its row: cumsum(mask) - 1, clamped at 0.

    Left padding then does not shift rotary / learned positions: the first real token is at 0
    whatever the padding. Pad positions get a harmless value (they are masked out).
    """
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def token_logps(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    response_mask: torch.Tensor,
) -> torch.Tensor:
    """Per-token log pi(y_t | y_<t) of the response tokens, aligned with ``input_ids``: [B, T].

    out[b, t] = log_softmax(logits[b, prev(b, t)])[input_ids[b, t]]  if response_mask & attention_mask
    at (b, t), else 0, where prev(b, t) is the last real (attended) position before t, which is t - 1
    unless padding sits in between (logits at a position predict the NEXT real token).
    log_softmax is computed in float32 whatever the model's dtype (bf16 log-probs summed over
    hundreds of tokens lose the differences the losses are made of).

    Runs with gradients if enabled: wrap in ``torch.no_grad()`` for reference / evaluation passes.
    Raises ValueError for a response token with no real token before it (nothing predicts it).
    """
    if input_ids.dim() != 2:
        raise ValueError(f"token_logps: input_ids must be [B, T], got shape {tuple(input_ids.shape)}")
    if attention_mask.shape != input_ids.shape or response_mask.shape != input_ids.shape:
        raise ValueError(
            "token_logps: input_ids, attention_mask and response_mask must have the same shape, got "
            f"{tuple(input_ids.shape)}, {tuple(attention_mask.shape)}, {tuple(response_mask.shape)}"
        )
    attn = attention_mask.bool()
    counted = response_mask.bool() & attn

    batch, seq_len = input_ids.shape
    positions = torch.arange(seq_len, device=input_ids.device).expand(batch, seq_len)
    # last real position at or before t; -1 where none yet
    last_real = torch.where(attn, positions, torch.full_like(positions, -1)).cummax(dim=-1).values
    # the position whose logits predict token t: last real position strictly before t
    prev = torch.cat([torch.full_like(last_real[:, :1], -1), last_real[:, :-1]], dim=-1)
    if (counted & (prev < 0)).any():
        raise ValueError(
            "token_logps: a response token has no real token before it (response_mask set on a row's "
            "first real token); its log-prob is undefined"
        )

    out = model(
        input_ids=input_ids,
        attention_mask=attention_mask.long(),
        position_ids=position_ids_from_mask(attention_mask),
        use_cache=False,
    )
    logits = out.logits  # [B, T, V]
    src = prev.clamp(min=0)
    rows = torch.arange(batch, device=input_ids.device).unsqueeze(-1)
    # log_softmax(x)[y] = x[y] - logsumexp(x), in float32; gathers one logit per position instead of
    # materialising a second [B, T, V] log-softmax tensor
    picked = logits[rows, src, input_ids].float()  # [B, T]
    lse = torch.logsumexp(logits.float(), dim=-1)[rows, src]  # [B, T]
    return torch.where(counted, picked - lse, torch.zeros_like(picked))


def sequence_logps(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    response_mask: torch.Tensor,
) -> torch.Tensor:
    """log pi(y | x) SUMMED over the response tokens of each sequence: [B], float32.

    sequence_logps[b] = sum_t response_mask[b, t] * attention_mask[b, t] * log pi(x_{b,t} | x_{b,<t})
    (see :func:`token_logps`). Summed, not length-averaged: BoNBoN's SFT and IPO terms and the KL
    estimator are all defined on sequence log-probabilities. Identical for left-, right- and
    un-padded versions of a sequence (positions come from the attention mask).
    """
    return token_logps(model, input_ids, attention_mask, response_mask).sum(dim=-1)
