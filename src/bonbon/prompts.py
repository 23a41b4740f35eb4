"""Prompts in the Anthropic HH format: loading, checking, splitting and left truncation.

An HH dialogue is a sequence of turns ``"\\n\\nHuman: …"`` and ``"\\n\\nAssistant: …"``. A *prompt* is
a dialogue that ends with the opening of an assistant turn, ``"\\n\\nAssistant:"``; the response the
model writes follows it (conventionally starting with a space).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from bonbon.tables import PROMPT_COLUMNS

HUMAN = "\n\nHuman:"
ASSISTANT = "\n\nAssistant:"
_TURN = re.compile(r"\n\n(Human|Assistant):")



class PromptFileError(ValueError):
    """A prompt file that cannot be used; the message names the file and, where it can, the row."""


def split_turns(dialogue: str) -> list[tuple[str, str]]:
    """Split an HH dialogue into ``(role, text)`` turns, role in {"Human", "Assistant"}.

    Text before the first turn marker is ignored (HH dialogues start with one).
    """
    parts = _TURN.split(dialogue)
    # parts = [preamble, role1, text1, role2, text2, ...]
    return [(parts[i], parts[i + 1]) for i in range(1, len(parts) - 1, 2)]


def check_prompt(prompt: str) -> str | None:
    """Return why ``prompt`` is not an HH prompt, or None when it is one."""
    if not isinstance(prompt, str) or not prompt.strip():
        return "empty prompt"
    if not prompt.startswith(HUMAN):
        return f"does not start with {HUMAN!r}"
    if not prompt.rstrip(" ").endswith(ASSISTANT):
        return f"does not end with {ASSISTANT!r}"
    return None


def normalize_prompt(text: str) -> str:
    """Make an HH prompt end exactly with ``"\\n\\nAssistant:"`` (no trailing space).

    The reference CSV stores whole dialogues whose last assistant turn is empty; trailing spaces would
    change tokenization of the response's first token.
    """
    return text.rstrip(" ")


def stable_hash(*parts: object, digits: int, algorithm: str = "sha256") -> int:
    """The first ``digits`` hex digits, as an int, of the hash of the parts joined by ``":"``: a seed or
    a draw that depends on the parts alone (Python's ``hash()`` changes from process to process)."""
    key = ":".join(str(p) for p in parts)
    return int(hashlib.new(algorithm, key.encode()).hexdigest()[:digits], 16)


def prompt_id(prompt: str) -> str:
    """A stable id for a prompt: the first 16 hex digits of its SHA-1.

    Ids derive from the text alone, so the same prompt keeps its id (and its sampling seed) in any
    subset, order or shard of a prompt set.
    """
    return hashlib.sha1(prompt.encode("utf-8")).hexdigest()[:16]


def read_prompt_file(path: str | Path) -> pd.DataFrame:
    """Read prompts from CSV, JSONL or Parquet with a ``prompt`` (or ``Prompt``) column.

    An optional ``split`` column (values ``train``/``eval``) is kept. Raises PromptFileError naming the
    file and the first bad row (1-based, as a spreadsheet shows it, header excluded). Blank CSV rows
    (every field empty or spaces) are dropped but keep their number, so a later row's number stays
    the file's; their count is ``frame.attrs["blank_rows"]``.
    """
    path = Path(path)
    if not path.exists():
        raise PromptFileError(f"{path}: prompt file does not exist")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            # blank lines are read as rows: skipping them would shift every later row's number
            frame = pd.read_csv(path, keep_default_na=False, dtype=str, skip_blank_lines=False)
        elif suffix in (".jsonl", ".json"):
            frame = pd.read_json(path, lines=suffix == ".jsonl", dtype=False)
        elif suffix == ".parquet":
            frame = pd.read_parquet(path)
        else:
            raise PromptFileError(f"{path}: unknown prompt file type {suffix!r} "
                                  "(use .csv, .jsonl or .parquet)")
    except PromptFileError:
        raise
    except Exception as error:  # pandas' parser errors do not name the file
        raise PromptFileError(f"{path}: cannot be parsed as {suffix[1:]}: {error}") from error
    column = next((c for c in ("prompt", "Prompt") if c in frame.columns), None)
    if column is None:
        raise PromptFileError(f"{path}: no 'prompt' or 'Prompt' column (columns: {list(frame.columns)})")
    frame = frame.reset_index(drop=True)  # index i is row i + 1 of the file, blank rows included
    blank = (frame.map(lambda v: isinstance(v, str) and not v.strip()).all(axis=1) if suffix == ".csv"
             else None)
    if blank is not None:
        frame = frame[~blank]
    if frame.empty:
        raise PromptFileError(f"{path}: no prompts (the file has a header but no rows): add one prompt a row")
    out = pd.DataFrame({"prompt": frame[column]})
    if "split" in frame.columns:
        out["split"] = frame["split"].astype(str)
        bad = ~out["split"].isin(["train", "eval"])
        if bad.any():
            row = int(out.index[bad.to_numpy()][0])
            raise PromptFileError(f"{path}: row {row + 1}: split {out['split'].loc[row]!r} "
                                  "is not 'train' or 'eval'")
    for row, text in out["prompt"].items():
        problem = check_prompt(text)
        if problem is not None:
            raise PromptFileError(f"{path}: row {row + 1}: {problem}: {str(text)[:80]!r}")
    out["prompt"] = out["prompt"].map(normalize_prompt)
    out = out.reset_index(drop=True)
    out.attrs["blank_rows"] = 0 if blank is None else int(blank.sum())
    return out


def build_prompt_table(
    prompts: pd.DataFrame, eval_fraction: float, seed: int, max_prompts: int | None = None
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Deduplicate, assign ids and train/eval splits, optionally subsample.

    Splits come from a ``split`` column where the source has one; otherwise a prompt is in ``eval``
    when the hash of (seed, prompt id) falls below ``eval_fraction``, so a prompt keeps its split when
    the set grows. Returns the table (columns ``PROMPT_COLUMNS``, sorted by id) and counts for the log.
    """
    counts = {"rows": len(prompts)}
    table = prompts.drop_duplicates(subset="prompt").copy()
    counts["duplicates_dropped"] = counts["rows"] - len(table)
    table["prompt_id"] = table["prompt"].map(prompt_id)
    if "split" not in table.columns:
        table["split"] = [
            "eval" if _unit_hash(seed, pid) < eval_fraction else "train" for pid in table["prompt_id"]
        ]
    table = table.sort_values("prompt_id", kind="stable")
    if max_prompts is not None and len(table) > max_prompts:
        # a hash order, not the head of the file, so a subsample is a fair draw of the source
        order = sorted(table["prompt_id"], key=lambda pid: _unit_hash("subsample", seed, pid))
        table = table[table["prompt_id"].isin(set(order[:max_prompts]))]
    # a chat dataset's conversations (bonbon.chat) stay beside their prompts
    extra = [c for c in ("messages", "turns_dropped") if c in table.columns]
    table = table[[*PROMPT_COLUMNS, *extra]].reset_index(drop=True)
    counts["train"] = int((table["split"] == "train").sum())
    counts["eval"] = int((table["split"] == "eval").sum())
    return table, counts


def _unit_hash(*parts: object) -> float:
    return stable_hash(*parts, digits=13, algorithm="sha1") / 16**13


def truncate_prompt_ids(prompt_ids: Sequence[int], max_length: int) -> list[int]:
    """Keep the last ``max_length`` token ids of a prompt.

    Cutting from the left keeps the end of a multi-turn dialogue, above all its final
    ``"\\n\\nAssistant:"``, which is what the model must continue (the reference implementation cut
    from the right and lost it).
    """
    if max_length <= 0:
        raise ValueError(f"max_length must be positive, got {max_length}")
    return list(prompt_ids[-max_length:])
