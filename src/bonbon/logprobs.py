"""Log-probabilities of responses under a causal LM: the one function training, the reference pass
and KL evaluation all share, so that the three agree to the last token.

Conventions: ``input_ids``, ``attention_mask`` and ``response_mask`` are [B, T] and aligned;
``response_mask`` marks the response tokens (whose log-probs are counted) and ``attention_mask``
marks real tokens. Padding may sit on the left, the right, or in between prompt and response.

Only the positions that predict a response token need a log-normaliser: ``logsumexp`` over the
vocabulary runs on those rows of the logits alone (and without gradients, in the reference and
evaluation passes, the LM head projects only those positions: a boolean ``logits_to_keep``) (in
chunks of :data:`LSE_CHUNK_ROWS`), never on the prompt or padding positions. Row by row it is the
same computation as over the whole [B, T, V] tensor, so values and gradients are bit-identical to it
(tested).

``padding_free=True`` (training's ``padding_free``, on by default where the model supports it: see
:func:`padding_free_problem`) packs the real tokens of the B rows
into one row: every linear layer runs on real tokens only, attention runs per sequence (each
sequence is put back in its own row for the attention product, so no token attends across
sequences), positions restart at 0 in every sequence, and the LM head projects only the positions
that predict a response token. The chosen and rejected sequence of a pair (rows i and i + B/2, the
order of ``collate_pairs``) share their prompt: it is packed, and computed, once, both responses
attending to it. Same values up to float32 rounding (matrix products of other shapes), not
bit-identical.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["LSE_CHUNK_ROWS", "padding_free_gap", "padding_free_problem", "position_ids_from_mask",
           "sequence_logps", "token_logps"]

# rows of logits per logsumexp chunk: bounds the float32 copy of a reference / evaluation pass
LSE_CHUNK_ROWS = 4096
PACKED_ATTENTION = "bonbon_packed_sdpa"


def position_ids_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position of each token among the real tokens of its row: cumsum(mask) - 1, clamped at 0.

    Left padding then does not shift rotary / learned positions: the first real token is at 0
    whatever the padding. Pad positions get a harmless value (they are masked out).
    """
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def _counted_and_predictors(
    input_ids: torch.Tensor, attention_mask: torch.Tensor, response_mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(counted [B, T] bool, prev [B, T]): the response tokens, and for each position the last real
    position strictly before it (-1 where none). Raises ValueError on bad shapes or a response token
    with no real token before it."""
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
    return counted, prev


def _row_logsumexp(logits: torch.Tensor) -> torch.Tensor:
    """logsumexp over the vocabulary of [N, V] logits, in float32, :data:`LSE_CHUNK_ROWS` rows at a time
    (the float32 copy of bf16 logits is then one chunk, not all N rows)."""
    lse = [torch.logsumexp(chunk.float(), dim=-1) for chunk in logits.split(LSE_CHUNK_ROWS)]
    return torch.cat(lse) if lse else logits.new_zeros(0, dtype=torch.float32)


def _selected_logps(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log_softmax(logits[i])[targets[i]] in float32 for [N, V] logits, logsumexp in row chunks."""
    picked = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1).float()
    return picked - _row_logsumexp(logits)


def _predicting_logits(
    model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, rows: torch.Tensor,
    sources: torch.Tensor,
) -> torch.Tensor:
    """The [N, V] logits at (rows, sources), the positions that predict the response tokens, from a
    forward whose LM head projects only those positions (a boolean ``logits_to_keep``): with a 49k
    vocabulary the full [B, T, V] float32 logits of 32 sequences of 240 tokens are 1.5 GB. Each
    source position predicts one token and they increase along a row, so the kept rows, in row-major
    order, are the (rows, sources) pairs in order."""
    keep = torch.zeros(input_ids.shape, dtype=torch.bool, device=input_ids.device)
    keep[rows, sources] = True
    out = model(
        input_ids=input_ids,
        attention_mask=attention_mask.long(),
        position_ids=position_ids_from_mask(attention_mask),
        use_cache=False,
        logits_to_keep=keep,
    )
    if out.logits.shape[:-1] != (len(rows),):
        raise RuntimeError(
            f"token_logps: the model returned logits of shape {tuple(out.logits.shape)} for a boolean "
            f"logits_to_keep of {len(rows)} positions (needs transformers >= 5.24 semantics)"
        )
    return out.logits


def token_logps(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    response_mask: torch.Tensor,
    padding_free: bool = False,
) -> torch.Tensor:
    """Per-token log pi(y_t | y_<t) of the response tokens, aligned with ``input_ids``: [B, T].

    out[b, t] = log_softmax(logits[b, prev(b, t)])[input_ids[b, t]]  if response_mask & attention_mask
    at (b, t), else 0, where prev(b, t) is the last real (attended) position before t, which is t - 1
    unless padding sits in between (logits at a position predict the NEXT real token).
    log_softmax is computed in float32 whatever the model's dtype (bf16 log-probs summed over
    hundreds of tokens lose the differences the losses are made of), and only at the positions
    that predict a response token.

    ``padding_free``: one packed row instead of the padded batch (see the module docstring); needs
    the model's attention implementation to be ``sdpa`` (the transformers default).

    Runs with gradients if enabled: wrap in ``torch.no_grad()`` for reference / evaluation passes.
    Raises ValueError for a response token with no real token before it (nothing predicts it).
    """
    counted, prev = _counted_and_predictors(input_ids, attention_mask, response_mask)
    if padding_free:
        return _packed_token_logps(model, input_ids, attention_mask, counted)
    rows, cols = counted.nonzero(as_tuple=True)
    if torch.is_grad_enabled():  # training: the LM head on every position (its gradient as it always was)
        out = model(
            input_ids=input_ids,
            attention_mask=attention_mask.long(),
            position_ids=position_ids_from_mask(attention_mask),
            use_cache=False,
        )
        # the [N, V] rows that predict response tokens; x[y] - logsumexp(x) = log_softmax(x)[y], without a
        # second [B, T, V] tensor and without exp() over prompt and padding positions
        predicting = out.logits[rows, prev[rows, cols]]
    else:  # reference and evaluation passes: the LM head only on the positions that predict a response token
        predicting = _predicting_logits(model, input_ids, attention_mask, rows, prev[rows, cols])
    values = _selected_logps(predicting, input_ids[rows, cols])
    result = torch.zeros(counted.shape, dtype=values.dtype, device=values.device)
    return result.index_put((rows, cols), values)


def sequence_logps(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    response_mask: torch.Tensor,
    padding_free: bool = False,
) -> torch.Tensor:
    """log pi(y | x) SUMMED over the response tokens of each sequence: [B], float32.

    sequence_logps[b] = sum_t response_mask[b, t] * attention_mask[b, t] * log pi(x_{b,t} | x_{b,<t})
    (see :func:`token_logps`). Summed, not length-averaged: BoNBoN's SFT and IPO terms and the KL
    estimator are all defined on sequence log-probabilities. Identical for left-, right- and
    un-padded versions of a sequence (positions come from the attention mask).
    """
    return token_logps(model, input_ids, attention_mask, response_mask, padding_free=padding_free).sum(dim=-1)


# ------------------------------------------------------------------------------- padding-free path


@dataclass
class PackedSequences:
    """A packed row of L tokens and the B sequences it holds. ``gather[b, c]`` is the packed index of
    token c of sequence b (L, a zero slot, past its end): a prompt shared by two sequences is one set
    of packed tokens that both rows point to. Packed token i is read back from position ``home[i]`` of
    the flattened [B, W] layout."""

    gather: torch.Tensor
    home: torch.Tensor
    calls: int = 0  # attention layers that ran on this layout (0 after a forward: the model dropped it)


def _packed_sdpa(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    bonbon_packed: PackedSequences | None = None,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """transformers attention function: per-sequence causal attention of a packed row; any other call
    (no ``bonbon_packed`` argument) is the library's own ``sdpa``."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if bonbon_packed is None:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    p = bonbon_packed
    p.calls += 1
    n_rows, width = p.gather.shape

    def rows(x: torch.Tensor) -> torch.Tensor:  # [1, H, L, D] -> [B, H, W, D], right-padded with 0
        x = x[0].transpose(0, 1)
        x = torch.cat([x, x.new_zeros((1, *x.shape[1:]))])
        # index_select, not x[gather]: its backward is index_add, not a (slow on CPU) accumulating index_put
        return x.index_select(0, p.gather.flatten()).view(n_rows, width, *x.shape[1:]).transpose(1, 2)

    q, k, v = rows(query), rows(key), rows(value)
    if k.shape[1] != q.shape[1]:  # grouped-query attention
        k = k.repeat_interleave(q.shape[1] // k.shape[1], dim=1)
        v = v.repeat_interleave(q.shape[1] // v.shape[1], dim=1)
    # right padding + causal: a real token only sees the real tokens of its own sequence
    out = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=True, scale=scaling)
    heads, head_dim = out.shape[1], out.shape[3]
    out = out.transpose(1, 2).reshape(n_rows * width, heads, head_dim)  # [B * W, H, D]
    return out.index_select(0, p.home).unsqueeze(0), None


def _packed_mask(*args, attention_mask=None, **kwargs):
    """The mask function of :data:`PACKED_ATTENTION`: none for a packed row (the attention function
    separates the sequences), sdpa's own mask otherwise."""
    from transformers.masking_utils import sdpa_mask

    return None if attention_mask is None else sdpa_mask(*args, attention_mask=attention_mask, **kwargs)


def _use_packed_attention(model: torch.nn.Module) -> None:
    """Route the model's attention through :func:`_packed_sdpa` (plain sdpa unless a packed row is passed)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS

    problem = padding_free_problem(model)
    if problem:
        raise ValueError(f"padding_free: {problem} (load the model with attn_implementation='sdpa' or set "
                         "training.padding_free: false)")
    config = _unwrapped(model).config
    if config._attn_implementation == PACKED_ATTENTION:
        return
    AttentionInterface.register(PACKED_ATTENTION, _packed_sdpa)
    ALL_MASK_ATTENTION_FUNCTIONS.register(PACKED_ATTENTION, _packed_mask)
    config._attn_implementation = PACKED_ATTENTION  # not saved with the config (transformers drops it)


def _unwrapped(model: torch.nn.Module) -> torch.nn.Module:
    inner = model
    while hasattr(inner, "module") or hasattr(inner, "_orig_mod"):  # DDP / FSDP / torch.compile wrappers
        inner = getattr(inner, "module", None) or inner._orig_mod
    return inner


def padding_free_problem(model: torch.nn.Module) -> str | None:
    """Why packed rows cannot run on ``model`` (None if they can): they need the model's attention to be
    transformers' ``sdpa`` (the default where an architecture supports it), which the packed attention
    function replaces. Models whose forward drops the attention keyword arguments are caught on the
    first packed forward; :func:`padding_free_gap` checks the values."""
    config = getattr(_unwrapped(model), "config", None)
    current = getattr(config, "_attn_implementation", None)
    if current in ("sdpa", PACKED_ATTENTION):
        return None
    return f"the model's attention implementation is {current!r}, not 'sdpa'"


@torch.no_grad()
def padding_free_gap(
    model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, response_mask: torch.Tensor
) -> float:
    """Mean |packed - padded| per-token log-prob over the response tokens of a batch (0.0 for none), with
    the model in eval mode (no dropout) and put back as it was. Float32 rounding gives ~1e-6; a model
    that mixes packed sequences or ignores their positions gives tenths or more."""
    was_training = model.training
    model.eval()
    try:
        padded = token_logps(model, input_ids, attention_mask, response_mask)
        packed = token_logps(model, input_ids, attention_mask, response_mask, padding_free=True)
    finally:
        model.train(was_training)
    counted = response_mask.bool() & attention_mask.bool()
    return float((packed - padded).abs()[counted].mean()) if counted.any() else 0.0


def _pack(input_ids: torch.Tensor, attention_mask: torch.Tensor, counted: torch.Tensor):
    """The packed row of a padded batch: (ids [L], positions [L], layout, counted tokens in the
    sequence layout [B, W], token ids in that layout [B, W]).

    Sequences are left-aligned (column c = c-th real token). Rows i and i + B/2 (a pair's chosen and
    rejected sequence, as ``collate_pairs`` orders them) whose tokens before the first response
    token are the same ids share one packed copy of them: their prompt is computed once.
    """
    n_rows = len(input_ids)
    device = input_ids.device
    real = attention_mask.bool()
    lengths = real.sum(-1)
    width = int(lengths.max())
    col = torch.arange(width, device=device).expand(n_rows, width)
    in_seq = col < lengths.unsqueeze(-1)
    # the sequences left-aligned: [B, W]
    ids = torch.zeros((n_rows, width), dtype=input_ids.dtype,
                      device=device).masked_scatter(in_seq, input_ids[real])
    resp = torch.zeros((n_rows, width), dtype=torch.bool, device=device).masked_scatter(in_seq, counted[real])
    # prompt length: tokens before the first response token (the whole sequence if it has none)
    prompt = torch.where(resp, col, lengths.unsqueeze(-1)).min(-1).values
    own = in_seq.clone()
    half = n_rows // 2
    if n_rows % 2 == 0 and half > 0:
        first, second = slice(0, half), slice(half, n_rows)
        same_prompt = (prompt[first] == prompt[second]) & (prompt[first] > 0) & resp[second].any(-1)
        same_prompt &= ~((ids[first] != ids[second]) & (col[first] < prompt[first].unsqueeze(-1))).any(-1)
        shared = same_prompt.unsqueeze(-1) & (col[second] < prompt[second].unsqueeze(-1))  # [B/2, W]
        own[second] &= ~shared
    index = own.flatten().cumsum(0).view(n_rows, width) - 1  # packed index of a sequence's own tokens
    total = int(own.sum())
    gather = torch.where(own, index, torch.full_like(index, total))
    if n_rows % 2 == 0 and half > 0:
        gather[second] = torch.where(shared, gather[first], gather[second])
    layout = PackedSequences(gather, own.flatten().nonzero().squeeze(-1))
    return ids[own], col[own], layout, resp, ids


def _packed_token_logps(
    model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, counted: torch.Tensor
) -> torch.Tensor:
    flat_ids, positions, layout, resp, ids = _pack(input_ids, attention_mask, counted)
    rows, cols = resp.nonzero(as_tuple=True)  # counted tokens, in the order of counted.nonzero()
    predictor = layout.gather[rows, cols - 1]  # packed index of the token before (never the first one)
    keep = torch.zeros(len(flat_ids), dtype=torch.bool, device=flat_ids.device)
    keep[predictor] = True  # a shared prompt's last token predicts two responses: projected once
    _use_packed_attention(model)
    out = model(
        input_ids=flat_ids.unsqueeze(0),
        position_ids=positions.unsqueeze(0),
        logits_to_keep=keep.unsqueeze(0),  # a boolean mask: the LM head runs on these positions only
        bonbon_packed=layout,
        use_cache=False,
    )
    if layout.calls == 0:
        raise RuntimeError(
            "padding_free: no attention layer of the model received the packed layout (its forward does not "
            "pass attention keyword arguments on), so the sequences would attend to one another; set "
            "training.padding_free: false for this model"
        )
    n_kept = int(keep.sum())
    if out.logits.shape[:-1] != (n_kept,):
        raise RuntimeError(
            f"padding_free: the model returned logits of shape {tuple(out.logits.shape)} for a boolean "
            f"logits_to_keep of {n_kept} positions (needs transformers >= 5.24 semantics)"
        )
    row_of = keep.cumsum(0) - 1  # packed index -> row of the kept logits
    lse = _row_logsumexp(out.logits)
    which = row_of[predictor]
    picked = out.logits.index_select(0, which).gather(-1, ids[rows, cols].unsqueeze(-1)).squeeze(-1)
    values = picked.float() - lse.index_select(0, which)
    result = torch.zeros(counted.shape, dtype=values.dtype, device=values.device)
    return result.index_put(counted.nonzero(as_tuple=True), values)
