"""Anthropic HH-RLHF as a data source: prompts, SFT targets and the original preference pairs.

Each HH row holds two whole dialogues, ``chosen`` and ``rejected``, that share everything up to their
final ``"\\n\\nAssistant:"`` and differ in the final assistant turn. :func:`split_dialogue` cuts a
dialogue there into (prompt, response); the prompt ends with ``"\\n\\nAssistant:"`` and the response
keeps its leading space, the same convention as the sampler's responses.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd

from bonbon.config import is_local_path
from bonbon.prompts import ASSISTANT, check_prompt, prompt_id
from bonbon.tables import PAIR_COLUMNS

log = logging.getLogger(__name__)

__all__ = [
    "HH_COLUMNS",
    "SPLIT_NAMES",
    "hh_pairs",
    "hh_prompts",
    "hh_sft_texts",
    "load_hh",
    "load_hh_prompts",
    "split_dialogue",
]

HH_COLUMNS = ("chosen", "rejected")
# HH split -> the workflow's prompt split
SPLIT_NAMES = {"train": "train", "test": "eval", "eval": "eval", "validation": "eval"}
# drop reasons of hh_pairs, in the order they are checked
DROP_REASONS = ("no_assistant_turn", "bad_prompt", "prompt_mismatch", "empty_response", "identical_responses")


def split_dialogue(dialogue: str) -> tuple[str, str]:
    """Split an HH dialogue at its LAST ``"\\n\\nAssistant:"``: (prompt ending with it, final response)."""
    if not isinstance(dialogue, str):
        raise ValueError(f"dialogue is not a string: {dialogue!r}")
    cut = dialogue.rfind(ASSISTANT)
    if cut < 0:
        raise ValueError(f"no assistant turn ({ASSISTANT!r}) in dialogue: {dialogue[:80]!r}")
    cut += len(ASSISTANT)
    return dialogue[:cut], dialogue[cut:]


def _check_columns(frame: pd.DataFrame, source: str) -> None:
    missing = [c for c in HH_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(
            f"{source}: missing column(s) {missing}: HH data needs whole dialogues in 'chosen' and "
            f"'rejected' (columns: {list(frame.columns)})"
        )
    for column in HH_COLUMNS:
        bad = [i for i, v in enumerate(frame[column]) if not isinstance(v, str)]
        if bad:
            value = frame[column].iloc[bad[0]]
            raise ValueError(f"{source}: row {bad[0] + 1}: {column!r} is not a string: {value!r}")


def _split_row(chosen: str, rejected: str) -> tuple[str | None, str, str, str]:
    """(drop reason or None, prompt, chosen response, rejected response) of one HH row."""
    try:
        prompt, good = split_dialogue(chosen)
        other, bad = split_dialogue(rejected)
    except ValueError:
        return "no_assistant_turn", "", "", ""
    if check_prompt(prompt) is not None:
        return "bad_prompt", prompt, good, bad
    if prompt != other:
        return "prompt_mismatch", prompt, good, bad
    if not good.strip() or not bad.strip():
        return "empty_response", prompt, good, bad
    if good.strip() == bad.strip():
        return "identical_responses", prompt, good, bad
    return None, prompt, good, bad


def hh_pairs(frame: pd.DataFrame, source: str) -> tuple[pd.DataFrame, dict[str, int]]:
    """The original HH preference pairs as a pair table (columns ``bonbon.tables.PAIR_COLUMNS``).

    Rows with no assistant turn, a prompt not in HH format, different chosen/rejected prompts, an empty
    response or identical responses are dropped, then all but the first row of each prompt, so the
    (prompt_id, chosen_idx=0, rejected_idx=1) keys are unique; counts name each reason. Rewards are NaN,
    both responses count as finished, and ``n`` is missing (pd.NA, Int64): these pairs are not best/worst
    of n samples, so anything derived from n (``beta: auto``) must not be used with them.
    """
    _check_columns(frame, source)
    counts = {"rows": len(frame), **dict.fromkeys(DROP_REASONS, 0)}
    rows = []
    for chosen, rejected in zip(frame["chosen"], frame["rejected"], strict=True):
        reason, prompt, good, bad = _split_row(chosen, rejected)
        if reason is not None:
            counts[reason] += 1
        else:
            rows.append((prompt, good, bad))
    pairs = pd.DataFrame(rows, columns=["prompt", "chosen", "rejected"], dtype=object)
    pairs.insert(0, "prompt_id", [prompt_id(p) for p in pairs["prompt"]])
    kept = ~pairs["prompt_id"].duplicated(keep="first")
    counts["duplicate_prompt"] = int((~kept).sum())
    pairs = pairs[kept].reset_index(drop=True)
    pairs["chosen_reward"] = np.nan
    pairs["rejected_reward"] = np.nan
    pairs["chosen_idx"] = np.int64(0)
    pairs["rejected_idx"] = np.int64(1)
    pairs["chosen_finished"] = True
    pairs["rejected_finished"] = True
    pairs["n"] = pd.array([pd.NA] * len(pairs), dtype="Int64")
    counts["pairs"] = len(pairs)
    dropped = counts["rows"] - counts["pairs"]
    if dropped:
        log.warning("%s: dropped %d of %d HH rows: %s", source, dropped, counts["rows"], counts)
    return pairs[list(PAIR_COLUMNS)], counts


def _split_base(split: str) -> str:
    """The split a datasets split expression names: ``"test[:500]"`` -> ``"test"``."""
    return re.split(r"[\[+]", split, maxsplit=1)[0].strip()


def _split_name(split: str) -> str:
    base = _split_base(split)
    if base not in SPLIT_NAMES:
        raise ValueError(f"unknown HH split {split!r} (use one of {sorted(SPLIT_NAMES)})")
    return SPLIT_NAMES[base]


def _chosen_split(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    """prompt and chosen response of each row whose chosen dialogue has an HH prompt; others dropped."""
    if "chosen" not in frame.columns:
        raise ValueError(f"{source}: missing column 'chosen' (columns: {list(frame.columns)})")
    rows, dropped = [], 0
    for value in frame["chosen"]:
        try:
            prompt, response = split_dialogue(value)
        except ValueError:
            dropped += 1
            continue
        if check_prompt(prompt) is not None:
            dropped += 1
            continue
        rows.append((prompt, response))
    if dropped:
        log.warning("%s: dropped %d of %d chosen dialogues with no HH prompt", source, dropped, len(frame))
    return pd.DataFrame(rows, columns=["prompt", "response"], dtype=object)


def hh_prompts(frame: pd.DataFrame, split_name: str) -> pd.DataFrame:
    """Prompts of the chosen dialogues: columns prompt, split (HH train -> 'train', test -> 'eval').

    Repeated prompts are kept; ``bonbon.prompts.build_prompt_table`` deduplicates them.
    """
    split = _split_name(split_name)
    prompts = _chosen_split(frame, f"HH {split_name}")[["prompt"]]
    prompts["split"] = split
    return prompts


def hh_sft_texts(frame: pd.DataFrame) -> pd.DataFrame:
    """SFT targets (the paper's): prompt_id, prompt and the chosen response; empty responses dropped."""
    texts = _chosen_split(frame, "HH SFT texts")
    texts = texts[[isinstance(r, str) and bool(r.strip()) for r in texts["response"]]].reset_index(drop=True)
    texts.insert(0, "prompt_id", [prompt_id(p) for p in texts["prompt"]])
    return texts


def _local_files(root: Path, data_dir: str | None, split: str) -> list[Path]:
    base = _split_base(split)
    folder = root / data_dir if data_dir else root
    if data_dir and not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no data_dir {data_dir!r} in local HH directory {root}")
    for name in (f"{base}.jsonl.gz", f"{base}.jsonl"):
        if (folder / name).is_file():
            return [folder / name]
    if data_dir is None:  # like the Hub repo without data_dir: every subset's file of this split
        files = sorted(root.glob(f"*/{base}.jsonl.gz")) or sorted(root.glob(f"*/{base}.jsonl"))
        if files:
            return files
    raise FileNotFoundError(
        f"{folder / (base + '.jsonl.gz')}: no such file (nor .jsonl) for split {base!r} in local HH "
        f"directory {root}"
    )


def load_hh(source: str, data_dir: str | None, split: str, cache_dir: str | None = None) -> pd.DataFrame:
    """Load HH-RLHF rows (columns chosen, rejected) with ``datasets.load_dataset``.

    ``source`` is a Hub id (``Anthropic/hh-rlhf``) or a local directory laid out like the Hub repo:
    ``{data_dir}/{split}.jsonl.gz`` (or ``.jsonl``); without ``data_dir`` a local directory gives the
    split of every subset, as the Hub does. ``split`` may carry a slice (``"test[:500]"``).
    """
    import datasets

    root = Path(source).expanduser()
    if root.is_dir():
        files = _local_files(root, data_dir, split)
        base = _split_base(split)
        where = str(files[0]) if len(files) == 1 else f"{root} ({len(files)} files)"
        data = datasets.load_dataset(
            "json", data_files={base: [str(f) for f in files]}, split=split, cache_dir=cache_dir
        )
    elif is_local_path(source):
        raise FileNotFoundError(
            f"{root}: no such directory (a local HH source is a directory like the Hub repo)"
        )
    else:
        where = f"{source} data_dir={data_dir} split={split}"
        data = datasets.load_dataset(source, data_dir=data_dir, split=split, cache_dir=cache_dir)
    frame = data.to_pandas()
    _check_columns(frame, where)
    return frame[list(HH_COLUMNS)].reset_index(drop=True)


def load_hh_prompts(
    source: str,
    data_dir: str | None,
    splits: tuple[str, ...] = ("train", "test"),
    cache_dir: str | None = None,
) -> pd.DataFrame:
    """Prompts of several HH splits in one table (prompt, split), ready for ``build_prompt_table``."""
    frames = [hh_prompts(load_hh(source, data_dir, s, cache_dir=cache_dir), s) for s in splits]
    return pd.concat(frames, ignore_index=True)
