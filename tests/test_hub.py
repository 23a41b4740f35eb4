"""Hub datasets beyond HH and preference datasets in (bonbon.hub): small datasets written to disk in each of
TRL's layouts (prompt text, prompt conversations, messages, implicit prompt) and each way of storing them
(save_to_disk, Parquet, JSONL, a directory like a Hub repository) give the prompts, SFT targets and pairs
they hold; bad rows are named; beta auto of a preference dataset's own pairs comes from datasets.*.n."""

from __future__ import annotations

import json

import datasets
import pandas as pd
import pytest

from bonbon.chat import messages_to_hh
from bonbon.config import ConfigError
from bonbon.hub import (
    DatasetFormatError,
    layout,
    load_prompts,
    load_rows,
    preference_pairs,
    row_prompts,
    sft_rows,
)
from bonbon.prompts import prompt_id
from bonbon.runs import expand_runs
from bonbon.tables import PAIR_COLUMNS
from bonbon.theory import beta_star

SYSTEM = {"role": "system", "content": "Be brief."}
CONVERSATIONS = [
    [{"role": "user", "content": "How do I boil an egg?"}],
    [SYSTEM, {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
     {"role": "user", "content": "Name a colour."}],
]
CHOSEN, REJECTED = ["Put it in boiling water.", "Blue."], ["No idea.", "Cars are fast."]


def layouts() -> dict[str, dict[str, list]]:
    """The same two prompts and pairs in each layout TRL reads."""
    hh = [messages_to_hh(c) for c in CONVERSATIONS]
    return {
        "prompt_text": {"prompt": [CONVERSATIONS[0][0]["content"], hh[1]], "chosen": CHOSEN,
                        "rejected": REJECTED},
        "prompt_conversational": {"prompt": CONVERSATIONS,
                                  "chosen": [[{"role": "assistant", "content": c}] for c in CHOSEN],
                                  "rejected": [[{"role": "assistant", "content": r}] for r in REJECTED]},
        "messages": {"messages": [c + [{"role": "assistant", "content": r}]
                                  for c, r in zip(CONVERSATIONS, CHOSEN, strict=True)]},
        "implicit": {"chosen": [c + [{"role": "assistant", "content": r}]
                                for c, r in zip(CONVERSATIONS, CHOSEN, strict=True)],
                     "rejected": [c + [{"role": "assistant", "content": r}]
                                  for c, r in zip(CONVERSATIONS, REJECTED, strict=True)]},
    }


def store(tmp_path, rows: dict[str, list], how: str) -> str:
    """Write train and test splits (the same rows) one way; returns the path the config would name."""
    data = datasets.Dataset.from_dict(rows)
    if how == "save_to_disk":
        datasets.DatasetDict({"train": data, "test": data}).save_to_disk(str(tmp_path / "saved"))
        return str(tmp_path / "saved")
    if how == "parquet_dir":
        for split in ("train", "test"):
            data.to_parquet(str(tmp_path / f"{split}.parquet"))
        return str(tmp_path)
    if how == "jsonl_dir":  # laid out like a Hub repository: {split}.jsonl
        for split in ("train", "test"):
            data.to_json(str(tmp_path / f"{split}.jsonl"), lines=True)
        return str(tmp_path)
    data.to_parquet(str(tmp_path / "pairs.parquet"))
    return str(tmp_path / "pairs.parquet")


@pytest.mark.parametrize("name", list(layouts()))
@pytest.mark.parametrize("how", ["save_to_disk", "parquet_dir", "jsonl_dir", "parquet_file"])
def test_every_layout_and_storage_gives_the_same_prompts(tmp_path, name, how):
    path = store(tmp_path, layouts()[name], how)
    frame, where = load_rows(path, None, "train")
    assert layout(frame, where) == ("prompt" if name.startswith("prompt") else name)
    prompts = row_prompts(frame, where)
    # the conversation up to its last user turn; ids hash its HH text, as a messages prompt file's do
    assert prompts["prompt"].tolist() == [messages_to_hh(c) for c in CONVERSATIONS]
    assert [json.loads(m) for m in prompts["messages"]] == (
        [CONVERSATIONS[0], [{"role": "user", "content": "Be brief. Hi"}, *CONVERSATIONS[1][2:]]]
        if name == "prompt_text" else CONVERSATIONS)  # HH text folds the system turn into the first user turn
    if how != "parquet_file":  # one file holds one split
        table = load_prompts({"path": path, "data_dir": None, "splits": {"train": "train", "eval": "test"}})
        assert table["split"].tolist() == ["train", "train", "eval", "eval"]
    texts = sft_rows(frame, where)
    assert [r.strip() for r in texts["response"]] == CHOSEN
    assert texts["prompt_id"].tolist() == [prompt_id(messages_to_hh(c)) for c in CONVERSATIONS]


@pytest.mark.parametrize("name", ["prompt_text", "prompt_conversational", "implicit"])
def test_preference_layouts_give_the_pair_table(tmp_path, name):
    frame, where = load_rows(store(tmp_path, layouts()[name], "jsonl_dir"), None, "train")
    pairs = preference_pairs(frame, where, n=8)
    assert list(pairs.columns) == list(PAIR_COLUMNS)
    assert pairs["chosen"].tolist() == [" " + c for c in CHOSEN]  # the sampler's leading space
    assert pairs["rejected"].tolist() == [" " + r for r in REJECTED]
    assert pairs["prompt_id"].tolist() == [prompt_id(messages_to_hh(c)) for c in CONVERSATIONS]
    assert (pairs["n"].tolist() == [8, 8]
            and pairs[["chosen_idx", "rejected_idx"]].values.tolist() == [[0, 1]] * 2)
    rendered = preference_pairs(frame, where, render=lambda text, messages: f"<{len(json.loads(messages))}>")
    turns = 3 if name == "prompt_text" else 4  # HH text folds the system turn into the user's
    # the policy's rendering; ids stay the HH text's
    assert rendered["prompt"].tolist() == ["<1>", f"<{turns}>"]
    assert rendered["prompt_id"].tolist() == pairs["prompt_id"].tolist() and rendered["n"].isna().all()


def test_bad_preference_rows_are_named_up_front():
    good = pd.DataFrame(layouts()["prompt_text"])
    with pytest.raises(DatasetFormatError, match=r"src: missing column\(s\) \['rejected'\]"):
        preference_pairs(good.drop(columns="rejected"), "src")
    with pytest.raises(DatasetFormatError, match="missing column"):
        preference_pairs(pd.DataFrame(layouts()["messages"]), "src")  # conversations, no pairs
    empty = good.assign(rejected=["No idea.", "  "])
    with pytest.raises(DatasetFormatError, match="src: row 2: empty rejected response"):
        preference_pairs(empty, "src")
    with pytest.raises(DatasetFormatError, match=r"src: row 2: the prompt has \d+ tokens, more than "
                                                 r"training.max_prompt_length 60"):
        preference_pairs(good, "src", prompt_tokens=len, max_prompt_length=60)  # characters as tokens
    with pytest.raises(DatasetFormatError, match="no 'prompt', 'messages' or 'chosen'/'rejected' column"):
        layout(pd.DataFrame({"text": ["x"]}), "src")
    with pytest.raises(DatasetFormatError, match="row 1: prompt: the last turn is 'assistant'"):
        row_prompts(pd.DataFrame({"prompt": [[{"role": "assistant", "content": "x"}]]}), "src")


def run_config(n: int | None, build_pairs: bool | None = None, runs: list | None = None) -> dict:
    dataset = {"source": "hf", "path": "data", "format": "trl", **({"n": n} if n else {}),
               **({} if build_pairs is None else {"build_pairs": build_pairs})}
    return {"datasets": {"prefs": dataset}, "n_values": [2, 4],
            "training": {"lora": {"enabled": False}, "seed": 0},
            "evaluation": {"checkpoints": {}},
            "runs": runs or [{"loss": "bonbon", "source": "original", "beta": ["auto"], "alpha": [0.005],
                              "training": {}}]}


def test_beta_auto_of_a_preference_dataset_comes_from_its_n():
    runs = expand_runs(run_config(8))
    (run,) = runs.values()
    assert run["beta"] == pytest.approx(beta_star(8)) and run["pairs"] == "original" and run["n"] is None
    with pytest.raises(ConfigError,
                       match=r"the original pairs of \['prefs'\] have none \(set datasets.<name>.n"):
        expand_runs(run_config(None))
    built = [{"loss": "ipo", "source": "pairs", "beta": [0.1], "training": {}}]
    with pytest.raises(ConfigError, match=r"datasets \['prefs'\] build no pairs \(build_pairs: false\)"):
        expand_runs(run_config(8, build_pairs=False, runs=built))
    assert len(expand_runs(run_config(8, build_pairs=True, runs=built))) == 2  # n = 2 and 4
