"""The examples a run trains and validates on, beyond their tokens: reference log-probs joined in from
their file, and the held-out validation prompts."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from bonbon.prompts import stable_hash
from bonbon.tables import read_table


def attach_reference(examples: list[dict[str, Any]], ref_logps_path: str | Path) -> None:
    """Join precomputed reference log-probs into the examples on (prompt_id, chosen_idx, rejected_idx).

    Raises ValueError naming the file when a pair has no finite reference log-prob, or when the
    response lengths differ (the file was computed with another tokenizer or max_length).
    """
    needed = ["prompt_id", "chosen_idx", "rejected_idx", "chosen_ref_logp", "rejected_ref_logp"]
    ref = read_table(ref_logps_path, needed, allow_empty=True)
    keys = zip(
        ref["prompt_id"].astype(str),
        ref["chosen_idx"].astype(int),
        ref["rejected_idx"].astype(int),
        strict=True,
    )
    row_of = {key: i for i, key in enumerate(keys)}
    cols = {c: ref[c].to_numpy() for c in ref.columns}
    for e in examples:
        key = (e["prompt_id"], e["chosen_idx"], e["rejected_idx"])
        row = row_of.get(key)
        if row is None:
            raise ValueError(f"{ref_logps_path}: no reference log-prob for pair {key}")
        for side in ("chosen", "rejected"):
            value = float(cols[f"{side}_ref_logp"][row])
            if not math.isfinite(value):
                raise ValueError(
                    f"{ref_logps_path}: reference log-prob of the {side} response of {key} is {value}"
                )
            length = cols.get(f"{side}_length")
            if length is not None and int(length[row]) != e[side]["response_length"]:
                raise ValueError(
                    f"{ref_logps_path}: {side} response of {key} has {int(length[row])} tokens there but "
                    f"{e[side]['response_length']} here: computed with another tokenizer or max_length?"
                )
            e[f"{side}_ref_logp"] = value


def split_validation(examples: list[dict[str, Any]], fraction: float) -> tuple[list[dict], list[dict]]:
    """(train, validation): a prompt's pairs are held out when the hash of its prompt id falls below
    ``fraction``, so every run of one pair file (and every n) holds out the same prompts."""
    if fraction <= 0:
        return examples, []

    def held_out(prompt_id: str) -> bool:
        return stable_hash("validation", prompt_id, digits=8, algorithm="sha1") < fraction * 2**32

    train = [e for e in examples if not held_out(e["prompt_id"])]
    validation = [e for e in examples if held_out(e["prompt_id"])]
    if not validation or not train:
        raise ValueError(f"validation_fraction {fraction} leaves {len(train)} training and {len(validation)} "
                         f"validation pairs of {len(examples)}; both need at least one")
    return train, validation

