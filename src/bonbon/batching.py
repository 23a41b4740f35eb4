"""Tokenization, truncation and batching of (prompt, response) pairs for training and the reference pass.

One tokenization serves both, so the reference log-probs computed once (``bonbon.reference``) are on
exactly the tokens the policy sees in training.

A sequence is ``prompt ids + response ids (+ EOS)``: prompt and response are tokenized separately
(the response tokens are the ones the sampler produced after the prompt), the prompt is cut from the
LEFT to ``max_prompt_length`` (keeping its final ``"\\n\\nAssistant:"``), then the response is cut at
its END so that the whole fits in ``max_length``. EOS is appended only to a response that finished
(the sampler stopped on EOS, not on its token limit): teaching a cut-off response to end there would
teach the model to stop mid-sentence.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import pandas as pd
import torch

from bonbon.prompts import truncate_prompt_ids
from bonbon.tables import TableError

log = logging.getLogger(__name__)

__all__ = ["collate", "collate_pairs", "pad_id", "pair_key", "tokenize_pairs", "tokenize_sft"]

# a tokenized sequence: {"input_ids": list[int], "prompt_length": int, "response_length": int}
Tokenized = dict[str, Any]
# a pair example: {"prompt_id", "chosen_idx", "rejected_idx", "chosen": Tokenized, "rejected": Tokenized}
Example = dict[str, Any]


def pad_id(tokenizer: Any) -> int:
    """The id used for padding: the tokenizer's pad token, else EOS (padding is masked out anyway)."""
    for value in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if value is not None:
            return int(value)
    return 0


def _encode(tokenizer: Any, texts: list[str]) -> list[list[int]]:
    # add_special_tokens=False: no BOS/EOS inserted by a template; EOS is placed by hand below
    if not texts:
        return []
    # cut by hand below: no warning
    return tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]


def _assemble(
    prompt_ids: Sequence[int],
    response_ids: Sequence[int],
    eos_id: int | None,
    max_prompt_length: int,
    max_length: int,
) -> Tokenized | None:
    prompt = truncate_prompt_ids(prompt_ids, max_prompt_length)
    budget = max_length - len(prompt)
    if not response_ids or budget <= 0:
        return None
    response = list(response_ids) + ([eos_id] if eos_id is not None else [])
    response = response[:budget]  # keep the start of the response; a cut one loses its EOS
    return {
        "input_ids": prompt + response,
        "prompt_length": len(prompt),
        "response_length": len(response),
        "prompt_truncated": len(prompt) < len(prompt_ids),
        "response_truncated": len(response) < len(response_ids) + (eos_id is not None),
    }


def _check_lengths(max_prompt_length: int, max_length: int) -> None:
    if not 0 < max_prompt_length < max_length:
        raise ValueError(
            f"need 0 < max_prompt_length < max_length, got max_prompt_length={max_prompt_length}, "
            f"max_length={max_length}"
        )


def pair_key(frame: pd.DataFrame) -> pd.Series:
    """One hashable key per pair row: (prompt_id, chosen_idx, rejected_idx)."""
    return pd.Series(
        list(
            zip(
                frame["prompt_id"].astype(str),
                frame["chosen_idx"].astype(int),
                frame["rejected_idx"].astype(int),
                strict=True,
            )
        ),
        index=frame.index,
    )


def _texts(column: pd.Series) -> list[str]:
    # a missing response (None/NaN) is an empty one: dropped below, not a crash in the tokenizer
    return ["" if not isinstance(v, str) else v for v in column]


def _finished(frame: pd.DataFrame, column: str) -> list[bool]:
    if column not in frame.columns:
        return [True] * len(frame)  # no information: assume the sampler stopped on EOS
    return [bool(v) if pd.notna(v) else True for v in frame[column]]


def tokenize_pairs(
    frame: pd.DataFrame, tokenizer: Any, max_prompt_length: int, max_length: int, source: str = "pairs"
) -> tuple[list[Example], dict[str, int]]:
    """Tokenize every pair of ``frame`` (columns ``bonbon.tables.PAIR_TEXT_COLUMNS``, optional
    ``chosen_finished`` / ``rejected_finished``); drop pairs with an empty chosen or rejected response
    after truncation.

    Returns (examples in row order, counts). ``source`` names the data in errors and the log.
    Raises TableError on a repeated (prompt_id, chosen_idx, rejected_idx).
    """
    _check_lengths(max_prompt_length, max_length)
    keys = pair_key(frame)
    if keys.duplicated().any():
        first = keys[keys.duplicated()].iloc[0]
        raise TableError(f"{source}: (prompt_id, chosen_idx, rejected_idx) {first} appears more than once")

    eos = tokenizer.eos_token_id
    prompts = _texts(frame["prompt"])
    # many pairs share a prompt (several pairs per prompt): tokenize each distinct prompt once
    unique_prompts = list(dict.fromkeys(prompts))
    prompt_ids = dict(zip(unique_prompts, _encode(tokenizer, unique_prompts), strict=True))
    sides = {}
    for side in ("chosen", "rejected"):
        ids = _encode(tokenizer, _texts(frame[side]))
        finished = _finished(frame, f"{side}_finished")
        sides[side] = [
            _assemble(prompt_ids[p], r, eos if f else None, max_prompt_length, max_length)
            for p, r, f in zip(prompts, ids, finished, strict=True)
        ]

    examples: list[Example] = []
    counts = {"pairs": len(frame), "dropped_empty_chosen": 0, "dropped_empty_rejected": 0}
    counts.update(prompt_truncated=0, chosen_truncated=0, rejected_truncated=0)
    for i, key in enumerate(keys):
        chosen, rejected = sides["chosen"][i], sides["rejected"][i]
        counts["dropped_empty_chosen"] += chosen is None
        counts["dropped_empty_rejected"] += rejected is None
        if chosen is None or rejected is None:
            continue
        counts["prompt_truncated"] += chosen["prompt_truncated"]
        counts["chosen_truncated"] += chosen["response_truncated"]
        counts["rejected_truncated"] += rejected["response_truncated"]
        examples.append(
            {
                "prompt_id": key[0],
                "chosen_idx": key[1],
                "rejected_idx": key[2],
                "chosen": chosen,
                "rejected": rejected,
            }
        )
    counts["dropped_empty"] = counts["pairs"] - len(examples)
    counts["kept"] = len(examples)
    if counts["dropped_empty"]:
        log.warning(
            "%s: dropped %d of %d pairs with an empty response after truncation (chosen %d, rejected %d)",
            source,
            counts["dropped_empty"],
            counts["pairs"],
            counts["dropped_empty_chosen"],
            counts["dropped_empty_rejected"],
        )
    log.info("%s: %s", source, counts)
    return examples, counts


def tokenize_sft(
    frame: pd.DataFrame, tokenizer: Any, max_prompt_length: int, max_length: int, source: str = "texts"
) -> tuple[list[Example], dict[str, int]]:
    """Tokenize (prompt, response) rows for SFT: examples carry only ``chosen`` (the response).

    An optional ``finished`` column says which responses get EOS; empty responses are dropped.
    """
    _check_lengths(max_prompt_length, max_length)
    prompts, responses = _texts(frame["prompt"]), _texts(frame["response"])
    ids = zip(
        _encode(tokenizer, prompts), _encode(tokenizer, responses), _finished(frame, "finished"), strict=True
    )
    ids_of = (
        frame["prompt_id"].astype(str).tolist()
        if "prompt_id" in frame.columns
        else [str(i) for i in range(len(frame))]
    )
    examples = []
    for pid, (p, r, f) in zip(ids_of, ids, strict=True):
        seq = _assemble(p, r, tokenizer.eos_token_id if f else None, max_prompt_length, max_length)
        if seq is not None:
            examples.append({"prompt_id": pid, "chosen": seq})
    counts = {"texts": len(frame), "kept": len(examples), "dropped_empty": len(frame) - len(examples)}
    if counts["dropped_empty"]:
        log.warning(
            "%s: dropped %d of %d texts with an empty response", source, counts["dropped_empty"], len(frame)
        )
    return examples, counts


def collate(sequences: Sequence[Tokenized], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Right-pad tokenized sequences into [N, T] ``input_ids``, ``attention_mask``, ``response_mask``."""
    width = max(len(s["input_ids"]) for s in sequences)
    input_ids = torch.full((len(sequences), width), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), width), dtype=torch.long)
    response_mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        n, start = len(seq["input_ids"]), seq["prompt_length"]
        input_ids[row, :n] = torch.tensor(seq["input_ids"], dtype=torch.long)
        attention_mask[row, :n] = 1
        response_mask[row, start:n] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask, "response_mask": response_mask}


def collate_pairs(examples: Sequence[Example], pad_token_id: int) -> dict[str, Any]:
    """One [2B, T] batch: the B chosen rows then the B rejected rows, so one forward serves both.

    Examples without ``rejected`` (SFT) give a [B, T] batch of chosen rows only. Also returns
    ``prompt_ids`` (for error messages), ``n_pairs`` = B and, when the examples carry them, the
    reference log-probs ``chosen_ref_logp`` / ``rejected_ref_logp`` as [B] tensors.
    """
    rows = [e["chosen"] for e in examples]
    if all("rejected" in e for e in examples):
        rows += [e["rejected"] for e in examples]
    batch: dict[str, Any] = collate(rows, pad_token_id)
    for key in ("chosen_ref_logp", "rejected_ref_logp"):
        if all(key in e for e in examples):  # joined in by training from the reference file
            batch[key] = torch.tensor([e[key] for e in examples], dtype=torch.float32)
    batch["prompt_ids"] = [e["prompt_id"] for e in examples]
    batch["n_pairs"] = len(examples)
    return batch
