"""Reference log-probs, computed once before training instead of at every step.

The reference model is frozen, so log pi_ref(y|x) of every chosen and rejected response is a constant
of the data set. Computing it once (here) and joining it into training saves a reference forward pass
per step and keeps the reference model out of training memory. The tokenization is
:func:`bonbon.batching.tokenize_pairs`, the one training uses, so the values are on the very tokens
the policy sees; the response lengths are stored too so that training can check it.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from bonbon.batching import collate, pad_id, pair_key, tokenize_pairs
from bonbon.logprobs import sequence_logps
from bonbon.models import load_policy
from bonbon.tables import PAIR_TEXT_COLUMNS, REF_COLUMNS, read_table, write_parquet

log = logging.getLogger(__name__)

__all__ = ["gather_reference_shards", "reference_logps", "write_reference_logps"]


def reference_logps(
    model: torch.nn.Module,
    tokenizer: Any,
    pairs: pd.DataFrame,
    max_prompt_length: int,
    max_length: int,
    batch_size: int,
    source: str = "pairs",
) -> pd.DataFrame:
    """log pi_ref of the chosen and rejected response of every pair, summed over response tokens.

    Returns one row per row of ``pairs`` with columns ``REF_COLUMNS``; pairs that truncation empties
    (dropped in training too) get NaN log-probs and length 0. Training joins on
    (prompt_id, chosen_idx, rejected_idx). ``batch_size`` counts sequences per forward pass.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    examples, _ = tokenize_pairs(pairs, tokenizer, max_prompt_length, max_length, source=source)
    seqs = [(i, side, e[side]) for i, e in enumerate(examples) for side in ("chosen", "rejected")]
    # longest first: batches of similar length waste little on padding, and an out-of-memory shows at once
    order = sorted(range(len(seqs)), key=lambda j: len(seqs[j][2]["input_ids"]), reverse=True)
    values = {side: [math.nan] * len(examples) for side in ("chosen", "rejected")}
    device = next(model.parameters()).device
    pad = pad_id(tokenizer)
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        for start in tqdm(range(0, len(order), batch_size), desc="reference log-probs", mininterval=5):
            picked = [seqs[j] for j in order[start : start + batch_size]]
            batch = {k: v.to(device) for k, v in collate([s for _, _, s in picked], pad).items()}
            logps = sequence_logps(model, batch["input_ids"], batch["attention_mask"], batch["response_mask"])
            for (i, side, _), value in zip(picked, logps.double().cpu().tolist(), strict=True):
                values[side][i] = value
    model.train(was_training)

    out = pd.DataFrame(
        {
            "prompt_id": pairs["prompt_id"].astype(str).to_numpy(),
            "chosen_idx": pairs["chosen_idx"].astype(int).to_numpy(),
            "rejected_idx": pairs["rejected_idx"].astype(int).to_numpy(),
        }
    )
    row_of = {key: row for row, key in enumerate(pair_key(out))}
    for side in ("chosen", "rejected"):
        logp, length = np.full(len(out), np.nan), np.zeros(len(out), dtype=np.int64)
        for i, e in enumerate(examples):
            row = row_of[(e["prompt_id"], e["chosen_idx"], e["rejected_idx"])]
            logp[row], length[row] = values[side][i], e[side]["response_length"]
        out[f"{side}_ref_logp"], out[f"{side}_length"] = logp, length
    return out[list(REF_COLUMNS)]


def write_reference_logps(
    model_path: str | Path,
    pairs_path: str | Path,
    out_path: str | Path,
    max_prompt_length: int,
    max_length: int,
    batch_size: int,
    dtype: str = "float32",
    shard: tuple[int, int] = (0, 1),
    device: str | None = None,
) -> pd.DataFrame:
    """Load the reference model, compute :func:`reference_logps` of a pair file, write it as Parquet.

    ``shard`` = (k, S) does rows k, k + S, k + 2S, ... of the pair file (every length in every shard);
    :func:`gather_reference_shards` puts the S tables back in pair-file order. ``device`` None means
    CUDA where visible. The file appears complete or not at all (written to a temporary name, then
    renamed).
    """
    index, count = shard
    if not 0 <= index < count:
        raise ValueError(f"shard {index} is not in 0..{count - 1}")
    pairs = read_table(pairs_path, PAIR_TEXT_COLUMNS, allow_empty=True).iloc[index::count]
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model, tokenizer = load_policy(model_path, device, getattr(torch, dtype))
    table = reference_logps(
        model, tokenizer, pairs, max_prompt_length, max_length, batch_size, source=str(pairs_path)
    )
    write_parquet(table, out_path)
    log.info("wrote %d reference log-prob rows to %s", len(table), out_path)
    return table


def gather_reference_shards(shards: list[pd.DataFrame]) -> pd.DataFrame:
    """The S shard tables of :func:`write_reference_logps` (shard k holds rows k, k + S, ...) as the one
    table an unsharded job writes: row r is row r // S of shard r % S."""
    count, total = len(shards), sum(len(t) for t in shards)
    for k, table in enumerate(shards):
        expected = len(range(k, total, count))
        if len(table) != expected:
            raise ValueError(f"shard {k + 1} of {count} has {len(table)} rows, "
                             f"expected {expected} of {total}")
    order = np.argsort(np.concatenate([np.arange(k, total, count) for k in range(count)]), kind="stable")
    # empty shards (more shards than pairs) add no rows; left out, they cannot blur the column dtypes
    filled = [t for t in shards if len(t)] or shards[:1]
    return pd.concat(filled, ignore_index=True).iloc[order].reset_index(drop=True)
