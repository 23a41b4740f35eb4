"""Hub datasets beyond the HH layout, and preference datasets in: the ``hf`` source's rows in any of the
layouts TRL reads.

Layouts (:func:`layout`), by column:

* ``hh``: ``chosen`` and ``rejected`` whole HH dialogues (Anthropic/hh-rlhf); :mod:`bonbon.sources`.
* ``prompt``: a ``prompt`` column, HH text, plain text (one user turn) or a list of ``{role, content}``
  messages (TRL's prompt-only and explicit-prompt preference formats); ``chosen`` / ``rejected``, where
  present, are text or a list holding the assistant message.
* ``messages``: a ``messages`` column of whole conversations (TRL's conversational language-modeling
  format); the prompt is the conversation up to its last user turn, the turn after it the response.
* ``implicit``: ``chosen`` and ``rejected`` lists of messages holding the whole conversation (TRL's
  implicit-prompt preference format); the prompt is their shared turns before the final assistant turn.

Where rows come from (:func:`load_rows`): a ``save_to_disk`` folder, a ``.parquet`` / ``.jsonl`` file, a
local directory laid out like a Hub repository (``{data_dir}/{split}.jsonl[.gz]`` or ``.parquet``), or a
Hub id with a split. Every prompt becomes HH text (what ids hash and a policy without a chat template
continues) plus, for a conversation, ``messages`` (JSON), as ``format: messages`` prompt files do.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bonbon.chat import ConversationError, hh_to_messages, messages_to_hh, parse_messages, to_json
from bonbon.prompts import check_prompt, prompt_id
from bonbon.sources import _split_base, split_dialogue
from bonbon.tables import PAIR_COLUMNS

__all__ = ["DatasetFormatError", "is_trl", "layout", "load_prompts", "load_rows", "preference_pairs",
           "row_prompts", "sft_rows"]


class DatasetFormatError(ValueError):
    """Rows that cannot be used; the message names the source and the row (1-based)."""


def _is_conversation(value: Any) -> bool:
    value = value.tolist() if hasattr(value, "tolist") else value
    return isinstance(value, list) and all(isinstance(t, dict) for t in value)


def layout(frame: pd.DataFrame, where: str) -> str:
    """Which layout the rows are in (see the module docstring); an error names the columns it has."""
    columns = set(frame.columns)
    if "prompt" in columns:
        return "prompt"
    if "messages" in columns:
        return "messages"
    if {"chosen", "rejected"} <= columns and len(frame) and _is_conversation(frame["chosen"].iloc[0]):
        return "implicit"
    if {"chosen", "rejected"} <= columns:
        return "hh"
    raise DatasetFormatError(f"{where}: no 'prompt', 'messages' or 'chosen'/'rejected' column (columns: "
                             f"{sorted(columns)}): not HH, nor one of TRL's prompt or preference layouts")


def _saved_folder(root: Path) -> bool:
    return (root / "dataset_dict.json").is_file() or (root / "state.json").is_file()


def load_rows(source: str, data_dir: str | None, split: str) -> tuple[pd.DataFrame, str]:
    """The rows of one split (a slice like ``"train[:500]"`` allowed) and a name for errors: from a
    ``save_to_disk`` folder (its split, or the one Dataset), a Parquet/JSONL file, a local directory like a
    Hub repository, or a Hub id."""
    import datasets

    root = Path(source).expanduser()
    base = _split_base(split)
    if root.is_dir() and _saved_folder(root):
        saved = datasets.load_from_disk(str(root))
        if isinstance(saved, datasets.DatasetDict):
            if base not in saved:
                raise DatasetFormatError(f"{root}: no split {base!r} (has {sorted(saved)})")
            saved = saved[base]
        return saved.to_pandas(), f"{root} [{base}]"
    if root.is_file():
        kind = {".parquet": "parquet", ".jsonl": "json", ".json": "json"}.get(root.suffix.lower())
        if kind is None:
            raise DatasetFormatError(f"{root}: unknown file type (use .parquet or .jsonl)")
        data = datasets.load_dataset(kind, data_files={base: str(root)}, split=split)
        return data.to_pandas(), str(root)
    if root.is_dir():
        folder = root / data_dir if data_dir else root
        files = sorted(folder.glob(f"{base}.parquet")) or sorted(folder.glob(f"*/{base}.parquet"))
        if files:
            data = datasets.load_dataset("parquet", data_files={base: [str(f) for f in files]}, split=split)
            return data.to_pandas(), str(files[0])
        return _raw_frame(source, data_dir, split), f"{folder} [{base}]"
    data = datasets.load_dataset(source, data_dir=data_dir, split=split)  # a Hub id
    return data.to_pandas(), f"{source} data_dir={data_dir} split={split}"


def _raw_frame(source: str, data_dir: str | None, split: str) -> pd.DataFrame:
    """A local JSONL directory's rows with every column (load_hh keeps only chosen/rejected and needs
    them)."""
    import datasets

    from bonbon.sources import _local_files

    files = _local_files(Path(source).expanduser(), data_dir, split)
    return datasets.load_dataset("json", data_files={_split_base(split): [str(f) for f in files]},
                                 split=split).to_pandas()


def _messages(value: Any, where: str) -> list[dict[str, str]]:
    """A list of messages as plain dicts (any trailing assistant turns kept), checked for role/content."""
    value = value.tolist() if hasattr(value, "tolist") else value
    if isinstance(value, str):
        value = json.loads(value)
    if not isinstance(value, list) or not value:
        raise DatasetFormatError(f"{where}: not a non-empty list of {{role, content}} messages")
    out = []
    for i, turn in enumerate(value):
        if (not isinstance(turn, dict) or not {"role", "content"} <= set(turn)
                or not isinstance(turn["content"], str)):
            raise DatasetFormatError(f"{where}: turn {i + 1} is not a {{role, content}} message: "
                                     f"{turn!r:.80}")
        out.append({"role": str(turn["role"]), "content": turn["content"]})
    return out


def _prompt_of(value: Any, where: str) -> tuple[str, str | None]:
    """(HH text, messages JSON or None) of a prompt cell: HH text, plain text or a list of messages."""
    if isinstance(value, str):
        if check_prompt(value) is None:
            return value.rstrip(" "), None
        if not value.strip():
            raise DatasetFormatError(f"{where}: empty prompt")
        value = [{"role": "user", "content": value}]
    try:
        conversation = parse_messages(_messages(value, where), where)
    except ConversationError as error:
        raise DatasetFormatError(str(error)) from error
    return messages_to_hh(conversation), to_json(conversation)


def _response_of(value: Any, where: str) -> str:
    """A response cell: text, or a list ending with the assistant message (its content)."""
    if not isinstance(value, str):
        turns = _messages(value, where)
        if turns[-1]["role"] != "assistant":
            raise DatasetFormatError(f"{where}: the response's last turn is {turns[-1]['role']!r}, "
                                     "not assistant")
        value = turns[-1]["content"]
    return value if value.startswith(" ") else " " + value  # the sampler's responses start with a space


def _split_conversation(value: Any, where: str) -> tuple[list[dict[str, str]], str]:
    """A whole conversation as (turns up to its last user turn, the assistant turn after it)."""
    turns = _messages(value, where)
    last_user = max((i for i, t in enumerate(turns) if t["role"] == "user"), default=-1)
    if last_user < 0:
        raise DatasetFormatError(f"{where}: no user turn")
    rest = turns[last_user + 1:]
    response = rest[0]["content"] if rest and rest[0]["role"] == "assistant" else ""
    return turns[: last_user + 1], response


def row_prompts(frame: pd.DataFrame, where: str) -> pd.DataFrame:
    """Each row's prompt: ``prompt`` (HH text) and, for conversations, ``messages`` (JSON; None for HH
    text). HH rows use their chosen dialogue's prompt (:func:`bonbon.sources.split_dialogue`)."""
    kind = layout(frame, where)
    prompts, messages = [], []
    for i in range(len(frame)):
        at = f"{where}: row {i + 1}"
        if kind == "hh":
            text, conversation = split_dialogue(frame["chosen"].iloc[i])[0], None
        elif kind == "prompt":
            text, conversation = _prompt_of(frame["prompt"].iloc[i], f"{at}: prompt")
        else:
            column = "messages" if kind == "messages" else "chosen"
            turns, _ = _split_conversation(frame[column].iloc[i], f"{at}: {column}")
            text, conversation = _prompt_of(turns, f"{at}: {column}")
        prompts.append(text)
        messages.append(conversation)
    out = pd.DataFrame({"prompt": prompts}, dtype=object)
    if any(m is not None for m in messages):  # HH-text rows of a mixed set become conversations too
        out["messages"] = [m if m is not None else to_json(hh_to_messages(p))
                           for m, p in zip(messages, prompts, strict=True)]
    return out


def sft_rows(frame: pd.DataFrame, where: str) -> pd.DataFrame:
    """SFT targets (prompt_id, prompt, response): the chosen response, or the assistant turn after a
    conversation's last user turn; rows without one are dropped."""
    kind = layout(frame, where)
    prompts = row_prompts(frame, where)["prompt"]
    if kind == "messages":
        responses = [_split_conversation(v, f"{where}: row {i + 1}")[1]
                     for i, v in enumerate(frame["messages"])]
    elif kind == "implicit":
        responses = [_split_conversation(v, f"{where}: row {i + 1}")[1]
                     for i, v in enumerate(frame["chosen"])]
    elif kind == "hh":
        responses = [split_dialogue(v)[1] for v in frame["chosen"]]
    else:
        if "chosen" not in frame.columns:
            raise DatasetFormatError(f"{where}: a prompt-only dataset has no responses to fine-tune on")
        responses = [_response_of(v, f"{where}: row {i + 1}: chosen") for i, v in enumerate(frame["chosen"])]
    texts = pd.DataFrame({"prompt": prompts, "response": responses}, dtype=object)
    texts = texts[[bool(r.strip()) for r in texts["response"]]].reset_index(drop=True)
    texts.insert(0, "prompt_id", [prompt_id(p) for p in texts["prompt"]])
    return texts


def preference_pairs(frame: pd.DataFrame, where: str, n: int | None = None, render: Any = None,
                     prompt_tokens: Any = None, max_prompt_length: int | None = None) -> pd.DataFrame:
    """A preference dataset's rows as a pair table (``PAIR_COLUMNS``), checked up front: the columns of its
    layout, no empty response, and, with ``prompt_tokens`` (prompt text -> token count) and
    ``max_prompt_length``, no prompt longer than the training limit (training would cut it from the
    left: these pairs were not made from the cut prompt). Each problem raises naming the row (1-based).
    ``render`` (HH text, messages JSON or None -> text) gives the prompt the policy continues (a chat
    template's rendering); ids hash the HH text, as the prompt table's do. ``n``: the pairs are the best and
    worst of n samples (BoNBoN's beta*(n)); None: not known. HH rows go through bonbon.sources.hh_pairs."""
    kind = layout(frame, where)
    if kind == "hh":
        raise DatasetFormatError(f"{where}: HH dialogues: read them with bonbon.sources.hh_pairs")
    if kind == "messages" or any(c not in frame.columns for c in ("chosen", "rejected")):
        missing = [c for c in ("chosen", "rejected") if c not in frame.columns]
        raise DatasetFormatError(f"{where}: missing column(s) {missing or ['chosen', 'rejected']}: "
                                 "a preference dataset needs chosen and rejected responses "
                                 f"(layout {kind}, columns {list(frame.columns)})")
    prompts = row_prompts(frame, where)
    rows = []
    for i in range(len(frame)):
        at = f"{where}: row {i + 1}"
        if kind == "prompt":
            good, bad = (_response_of(frame[c].iloc[i], f"{at}: {c}") for c in ("chosen", "rejected"))
        else:
            good, bad = (" " + _split_conversation(frame[c].iloc[i], f"{at}: {c}")[1]
                         for c in ("chosen", "rejected"))
        for side, text in (("chosen", good), ("rejected", bad)):
            if not text.strip():
                raise DatasetFormatError(f"{at}: empty {side} response")
        text = prompts["prompt"].iloc[i]
        conversation = prompts["messages"].iloc[i] if "messages" in prompts.columns else None
        prompt = render(text, conversation) if render is not None else text
        if prompt_tokens is not None and max_prompt_length is not None:
            length = prompt_tokens(prompt)
            if length > max_prompt_length:
                raise DatasetFormatError(f"{at}: the prompt has {length} tokens, more than "
                                         f"training.max_prompt_length {max_prompt_length}: drop the row or "
                                         "raise the limit")
        rows.append((prompt_id(text), prompt, good, bad))
    pairs = pd.DataFrame(rows, columns=["prompt_id", "prompt", "chosen", "rejected"], dtype=object)
    duplicated = pairs["prompt_id"].duplicated()
    if duplicated.any():  # one pair a prompt: (prompt_id, 0, 1) keys the reference log-probs
        pairs = pairs[~duplicated].reset_index(drop=True)
    pairs["chosen_reward"], pairs["rejected_reward"] = np.nan, np.nan
    pairs["chosen_idx"], pairs["rejected_idx"] = np.int64(0), np.int64(1)
    pairs["chosen_finished"], pairs["rejected_finished"] = True, True
    pairs["n"] = pd.array([n] * len(pairs), dtype="Int64")
    for column in ("chosen_reward", "rejected_reward"):  # TRL exports carry rewards: keep them
        if column in frame.columns:
            pairs[column] = pd.to_numeric(frame[column][~duplicated.to_numpy()],
                                          errors="coerce").to_numpy(float)
    return pairs[list(PAIR_COLUMNS)]



def is_trl(dataset: dict[str, Any]) -> bool:
    """Whether a dataset's config reads TRL layouts (``source: hf`` with ``format: trl`` or ``messages``)."""
    return dataset.get("source") == "hf" and dataset.get("format") in ("trl", "messages")


def load_prompts(dataset: dict[str, Any]) -> pd.DataFrame:
    """Prompts of a TRL-layout hf dataset's train and eval splits (prompt, split, messages where any),
    ready for ``bonbon.prompts.build_prompt_table``."""
    frames = []
    for name, split in (("train", dataset["splits"]["train"]), ("eval", dataset["splits"]["eval"])):
        frame, where = load_rows(dataset["path"], dataset.get("data_dir"), split)
        prompts = row_prompts(frame, where)
        prompts["split"] = name
        frames.append(prompts)
    out = pd.concat(frames, ignore_index=True)
    if "messages" in out.columns:  # a split of HH text beside one of conversations
        out["messages"] = [m if isinstance(m, str) else to_json(hh_to_messages(p))
                           for m, p in zip(out["messages"], out["prompt"], strict=True)]
    return out
