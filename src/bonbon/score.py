"""Reward scoring: every (prompt, response) through a sequence-classification reward model, or a reward
function (:mod:`bonbon.reward_functions`)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import pandas as pd
import torch
from tqdm.auto import tqdm

from bonbon.chat import encode_chat_pairs, has_chat_template
from bonbon.reward_functions import RewardFunction

log = logging.getLogger(__name__)


def encode_pairs(tokenizer, prompts: Sequence[str], responses: Sequence[str], max_length: int | None = None):
    """Tokenize (prompt, response) pairs the way a reward model reads them, ``tokenizer(prompt, response)``.

    Where a pair is longer than ``max_length`` (default: the tokenizer's ``model_max_length``), the
    prompt is cut from the left: the response and the end of the dialogue are what the reward judges.
    A response that alone does not fit is cut at its end (its start is kept). Returns the batch and a
    per-row list of what was cut: ``""``, ``"prompt"`` or ``"prompt+response"``.
    """
    max_length = max_length or tokenizer.model_max_length
    prompts, responses = list(prompts), list(responses)
    specials = tokenizer.num_special_tokens_to_add(pair=True)
    # verbose=False: these lengths are measured in order to cut on purpose (and count it), so
    # transformers' "Token indices sequence length is longer than..." warning would only be noise
    response_ids = tokenizer(responses, add_special_tokens=False, verbose=False)["input_ids"]
    prompt_ids = tokenizer(prompts, add_special_tokens=False, verbose=False)["input_ids"]
    cut = []
    for i, (p, r) in enumerate(zip(prompt_ids, response_ids, strict=True)):
        if len(p) + len(r) + specials <= max_length:
            cut.append("")
            continue
        room = max_length - specials - 1  # at least one prompt token stays
        if len(r) > room:
            responses[i] = tokenizer.decode(r[:room])
            cut.append("prompt+response")
        else:
            cut.append("prompt")
    side = tokenizer.truncation_side
    tokenizer.truncation_side = "left"
    try:
        batch = tokenizer(
            prompts, responses, truncation="only_first", max_length=max_length, padding=True,
            return_tensors="pt"
        )
    finally:
        tokenizer.truncation_side = side
    batch.pop("token_type_ids", None)  # DeBERTa-v3 has no token types; other families ignore them too
    return batch, cut


@torch.inference_mode()
def score_responses(
    model, tokenizer, prompts: Sequence[str], responses: Sequence[str], batch_size: int = 32,
    desc: str = "score", messages: Sequence | None = None,
) -> tuple[list[float], list[str]]:
    """The reward of each (prompt, response): the model's single logit, batched by length.

    ``model`` may be a :class:`bonbon.reward_functions.RewardFunction` (``tokenizer`` None), which
    scores the rows itself. A reward tokenizer with a chat template scores the conversation
    (``messages``, JSON per row, where the prompts are chat-rendered; else parsed from the HH prompt)
    and the response rendered with *its* template (``bonbon.chat.encode_chat_pairs``); without one,
    ``encode_pairs`` as always.
    Returns the rewards in input order and, per row, what had to be cut to fit (see ``encode_pairs``).
    """
    if isinstance(model, RewardFunction):  # a Python reward function: the same columns, no tokens to cut
        return model.score(prompts, responses, messages, desc=desc), [""] * len(prompts)
    chat = has_chat_template(tokenizer)
    device = next(model.parameters()).device
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]) + len(responses[i]))
    rewards: list[float] = [float("nan")] * len(prompts)
    cuts: list[str] = [""] * len(prompts)
    for start in tqdm(range(0, len(order), batch_size), desc=desc, mininterval=5):
        idx = order[start : start + batch_size]
        if chat:
            batch, cut = encode_chat_pairs(tokenizer, [prompts[i] for i in idx], [responses[i] for i in idx],
                                           None if messages is None else [messages[i] for i in idx])
        else:
            batch, cut = encode_pairs(tokenizer, [prompts[i] for i in idx], [responses[i] for i in idx])
        logits = model(**batch.to(device)).logits
        if logits.shape[-1] != 1:
            raise ValueError(f"reward model must have one output label, it has {logits.shape[-1]}")
        for i, value, c in zip(idx, logits[:, 0].float().tolist(), cut, strict=True):
            rewards[i] = value
            cuts[i] = c
    return rewards, cuts


def _messages(samples: pd.DataFrame) -> list | None:
    """The conversations of chat-rendered prompts (a ``messages`` column), or None for HH text."""
    return samples["messages"].tolist() if "messages" in samples.columns else None


def score_samples(samples: pd.DataFrame, model, tokenizer, batch_size: int, column: str = "reward",
                  desc: str = "score") -> tuple[pd.DataFrame, dict[str, int]]:
    """Add a ``column`` of rewards (``reward``, the proxy; ``judge_reward``, the judge) to a sample table;
    returns it and counts of the rows that were cut."""
    rewards, cuts = score_responses(model, tokenizer, samples["prompt"].tolist(),
                                    samples["response"].tolist(), batch_size=batch_size, desc=desc,
                                    messages=_messages(samples))
    out = samples.copy()
    out[column] = rewards
    counts = {
        "rows": len(out),
        "prompt_cut": sum(c == "prompt" for c in cuts),
        "prompt_and_response_cut": sum(c == "prompt+response" for c in cuts),
    }
    return out, counts
