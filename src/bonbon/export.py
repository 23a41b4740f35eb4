"""Pairs out: a pair table and its reference log-probs as a preference dataset in TRL's format.

TRL's preference format is one row per pair with ``prompt``, ``chosen`` and ``rejected``: text (the
"standard" format) or, for chat prompts, lists of ``{"role", "content"}`` messages (the
"conversational" format: the prompt's turns, and the response as one assistant message). TRL's
``DPOTrainer`` reads precomputed reference log-probs from ``ref_chosen_logps`` and ``ref_rejected_logps``.

Here the prompt is the HH text of the pair's prompt (what the workflow tokenizes for a policy without a
chat template), or, where the prompt table holds the conversation (``messages``: a chat-template policy
or a ``format: messages`` dataset), that conversation. The reference log-probs are the workflow's own
(:mod:`bonbon.reference`: summed over response tokens, on the tokens training sees); pairs whose response
truncation empties have none and are left out, as training leaves them out. Two differences from what
TRL would compute itself: TRL appends EOS to every response, the workflow only to finished ones
(``chosen_finished`` / ``rejected_finished`` are kept, so the unfinished ones can be found), and TRL
truncates the end of prompt + response where the workflow cuts the prompt from the left.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd

from bonbon.batching import pair_key
from bonbon.chat import parse_messages
from bonbon.tables import TableError

log = logging.getLogger(__name__)

__all__ = ["TRL_COLUMNS", "to_trl", "write_trl"]

# TRL's columns first, then what the workflow knows about each pair
TRL_COLUMNS = ("prompt", "chosen", "rejected", "ref_chosen_logps", "ref_rejected_logps")
EXTRA_COLUMNS = ("prompt_id", "chosen_reward", "rejected_reward", "chosen_idx", "rejected_idx",
                 "chosen_finished", "rejected_finished", "n")


def _conversations(pairs: pd.DataFrame, prompts: pd.DataFrame | None) -> list[list[dict[str, str]]] | None:
    """Each pair's prompt conversation from the prompt table's ``messages``, or None (text prompts)."""
    if prompts is None or "messages" not in prompts.columns:
        return None
    by_id = dict(zip(prompts["prompt_id"].astype(str), prompts["messages"], strict=True))
    missing = sorted(set(pairs["prompt_id"].astype(str)) - set(by_id))
    if missing:
        raise TableError(f"{len(missing)} pairs' prompts are not in the prompt table (e.g. {missing[0]!r})")
    return [parse_messages(by_id[str(p)], f"prompt {p}") for p in pairs["prompt_id"]]


def to_trl(pairs: pd.DataFrame, ref: pd.DataFrame,
           prompts: pd.DataFrame | None = None) -> tuple[pd.DataFrame, dict]:
    """The pairs of a pair table (``bonbon.tables.PAIR_COLUMNS``) joined to their reference log-probs
    (``REF_COLUMNS``, keyed by prompt_id, chosen_idx, rejected_idx) as TRL preference rows: ``TRL_COLUMNS``
    then ``EXTRA_COLUMNS`` (those the pair table has). Conversational where ``prompts`` has ``messages``.
    Returns the rows (pair-table order) and counts: pairs, exported, without_reference (left out)."""
    ref_of = dict(zip(pair_key(ref), zip(ref["chosen_ref_logp"], ref["rejected_ref_logp"], strict=True),
                      strict=True))
    keys = pair_key(pairs)
    absent = [k for k in keys if k not in ref_of]
    if absent:
        raise TableError(f"{len(absent)} pairs have no reference log-prob row (e.g. {absent[0]}): "
                         "the reference table is not this pair file's")
    logps = pd.DataFrame([ref_of[k] for k in keys], columns=["ref_chosen_logps", "ref_rejected_logps"],
                         index=pairs.index, dtype="float64")
    out = pd.DataFrame({"prompt": pairs["prompt"], "chosen": pairs["chosen"], "rejected": pairs["rejected"]})
    conversations = _conversations(pairs, prompts)
    if conversations is not None:  # a template's content is stripped, as bonbon.chat stores responses
        out["prompt"] = conversations
        out["chosen"] = [[{"role": "assistant", "content": r.strip()}] for r in pairs["chosen"]]
        out["rejected"] = [[{"role": "assistant", "content": r.strip()}] for r in pairs["rejected"]]
    out = pd.concat([out, logps, pairs[[c for c in EXTRA_COLUMNS if c in pairs.columns]]], axis=1)
    kept = logps.notna().all(axis=1)
    counts = {"pairs": len(pairs), "exported": int(kept.sum()), "without_reference": int((~kept).sum()),
              "format": "standard" if conversations is None else "conversational"}
    return out[kept].reset_index(drop=True), counts


def write_trl(rows: pd.DataFrame, folder: str | Path, parquet: str | Path, jsonl: str | Path) -> Any:
    """Write TRL rows with ``datasets``: ``save_to_disk(folder)`` (``load_from_disk``), a Parquet file and
    a JSONL file (``load_dataset("parquet" | "json", data_files=...)``). Returns the Dataset."""
    import datasets

    if "n" in rows.columns:  # pd.NA (original pairs) is no Arrow integer: a nullable int64 column
        rows = rows.assign(n=rows["n"].astype("Int64"))
    dataset = datasets.Dataset.from_pandas(rows, preserve_index=False)
    dataset.save_to_disk(str(folder))
    dataset.to_parquet(str(parquet))
    dataset.to_json(str(jsonl), lines=True, force_ascii=False)
    log.info("wrote %d TRL preference rows to %s, %s and %s", len(rows), folder, parquet, jsonl)
    return dataset

