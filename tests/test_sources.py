"""HH-RLHF as a source: dialogue splitting, original pairs, prompts, SFT texts, local Hub-like loading."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pandas as pd
import pytest

from bonbon import batching
from bonbon.prompts import ASSISTANT, HUMAN, build_prompt_table, check_prompt, prompt_id, read_prompt_file
from bonbon.sources import (
    hh_pairs,
    hh_prompts,
    hh_sft_texts,
    load_hh,
    load_hh_prompts,
    split_dialogue,
)
from bonbon.tables import PAIR_COLUMNS, PAIR_TEXT_COLUMNS, TableError, read_table, write_parquet

HH_PROMPTS = Path(__file__).resolve().parents[2] / "shared" / "data" / "hh_prompt_subset.csv"

MULTI = f"{HUMAN} How do I bake bread?{ASSISTANT} With flour, water and yeast.{HUMAN} How long?{ASSISTANT}"
SINGLE = f"{HUMAN} What is 2+2?{ASSISTANT}"


def _row(prompt: str, chosen: str, rejected: str) -> dict[str, str]:
    return {"chosen": prompt + chosen, "rejected": prompt + rejected}


TRAIN_ROWS = [
    _row(MULTI, " About an hour.", " Forever."),
    _row(SINGLE, " 4.", " 5."),
    _row(MULTI, " One hour.", " No idea."),  # same prompt as row 1: dropped as a duplicate
    {"chosen": MULTI + " An hour.", "rejected": SINGLE + " 5."},  # prompts differ
    _row(SINGLE, " 4.", " 4."),  # identical responses
    _row(f"{HUMAN} Hi?{ASSISTANT}", "", " Hello."),  # empty chosen response
    {"chosen": f"{HUMAN} no answer here", "rejected": f"{HUMAN} none here either"},  # no assistant turn
]
TEST_ROWS = [
    _row(f"{HUMAN} Capital of France?{ASSISTANT}", " Paris.", " Lyon."),
    _row(f"{HUMAN} Hi{ASSISTANT} Hello!{HUMAN} Tell me a joke.{ASSISTANT}", " A pun.", " No."),
]


def _write_jsonl_gz(path: Path, rows: list[dict[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")


@pytest.fixture
def hh_dir(tmp_path: Path) -> Path:
    """A local directory laid out like the Anthropic/hh-rlhf Hub repo."""
    root = tmp_path / "hh-rlhf"
    _write_jsonl_gz(root / "helpful-base" / "train.jsonl.gz", TRAIN_ROWS)
    _write_jsonl_gz(root / "helpful-base" / "test.jsonl.gz", TEST_ROWS)
    _write_jsonl_gz(root / "harmless-base" / "test.jsonl.gz", TEST_ROWS[:1])
    return root


def test_split_dialogue_multi_turn() -> None:
    prompt, response = split_dialogue(MULTI + " About an hour.\n\nThanks.")
    assert prompt == MULTI
    assert prompt.endswith(ASSISTANT) and "With flour, water and yeast." in prompt
    assert response == " About an hour.\n\nThanks."
    assert split_dialogue(SINGLE) == (SINGLE, "")


def test_split_dialogue_without_assistant_turn() -> None:
    with pytest.raises(ValueError, match="no assistant turn"):
        split_dialogue(f"{HUMAN} hello")


def test_load_hh_local_directory_like_the_hub(hh_dir: Path, tmp_path: Path) -> None:
    cache = str(tmp_path / "cache")
    train = load_hh(str(hh_dir), "helpful-base", "train", cache_dir=cache)
    assert list(train.columns) == ["chosen", "rejected"]
    assert train["chosen"].tolist() == [r["chosen"] for r in TRAIN_ROWS]
    assert len(load_hh(str(hh_dir), "helpful-base", "test[:1]", cache_dir=cache)) == 1
    # no data_dir: every subset's file of the split, as on the Hub
    assert len(load_hh(str(hh_dir), None, "test", cache_dir=cache)) == len(TEST_ROWS) + 1


def test_load_hh_missing_files_name_the_path(hh_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="red-team-attempts"):
        load_hh(str(hh_dir), "red-team-attempts", "train")
    with pytest.raises(FileNotFoundError, match=r"harmless-base/train\.jsonl\.gz"):
        load_hh(str(hh_dir), "harmless-base", "train")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_hh(str(tmp_path / "nowhere"), "helpful-base", "train")


def test_hh_pairs_drops_and_counts_bad_rows(hh_dir: Path, tmp_path: Path) -> None:
    frame = load_hh(str(hh_dir), "helpful-base", "train", cache_dir=str(tmp_path / "cache"))
    pairs, counts = hh_pairs(frame, source="hh")
    assert counts == {
        "rows": 7,
        "no_assistant_turn": 1,
        "bad_prompt": 0,
        "prompt_mismatch": 1,
        "empty_response": 1,
        "identical_responses": 1,
        "duplicate_prompt": 1,
        "pairs": 2,
    }
    assert list(pairs.columns) == list(PAIR_COLUMNS)
    assert set(PAIR_TEXT_COLUMNS) <= set(pairs.columns)
    assert batching.pair_key(pairs).is_unique
    assert pairs["prompt"].tolist() == [MULTI, SINGLE]
    assert pairs["chosen"].tolist() == [" About an hour.", " 4."]  # the first row of a repeated prompt
    assert pairs["rejected"].tolist() == [" Forever.", " 5."]
    assert pairs["prompt_id"].tolist() == [prompt_id(MULTI), prompt_id(SINGLE)]
    assert (pairs["chosen_idx"] == 0).all() and (pairs["rejected_idx"] == 1).all()
    assert pairs["chosen_reward"].isna().all() and pairs["chosen_finished"].all()
    assert str(pairs["n"].dtype) == "Int64" and pairs["n"].isna().all()
    again, _ = hh_pairs(frame.iloc[::-1].reset_index(drop=True), source="hh")
    assert set(again["prompt_id"]) == set(pairs["prompt_id"])  # ids come from the text, not the row


def test_hh_pairs_errors_name_source_and_row() -> None:
    with pytest.raises(ValueError, match=r"my-source: missing column\(s\) \['rejected'\]"):
        hh_pairs(pd.DataFrame({"chosen": [MULTI]}), source="my-source")
    with pytest.raises(ValueError, match="my-source: row 2: 'rejected'"):
        hh_pairs(pd.DataFrame({"chosen": [SINGLE, SINGLE], "rejected": [SINGLE, None]}), source="my-source")


def test_original_pairs_round_trip_to_training(tmp_path: Path) -> None:
    """What the original_pairs stage writes is what training and the reference pass read back."""
    pairs, counts = hh_pairs(pd.DataFrame(TRAIN_ROWS), source="hh")
    assert counts["pairs"] == 2
    write_parquet(pairs, tmp_path / "original.parquet")
    back = read_table(tmp_path / "original.parquet", PAIR_TEXT_COLUMNS)
    assert back["n"].isna().all() and back["prompt"].tolist() == [MULTI, SINGLE]
    assert (back["chosen"].tolist() == [" About an hour.", " 4."]
            and back["rejected"].tolist() == [" Forever.", " 5."])
    with pytest.raises(TableError, match=r"missing\.parquet: file does not exist"):
        read_table(tmp_path / "missing.parquet", PAIR_TEXT_COLUMNS)
    write_parquet(pairs.drop(columns="rejected"), tmp_path / "bad.parquet")
    with pytest.raises(TableError, match=r"bad\.parquet: missing columns \['rejected'\]"):
        read_table(tmp_path / "bad.parquet", PAIR_TEXT_COLUMNS)


def test_hh_prompts_and_sft_texts(hh_dir: Path, tmp_path: Path) -> None:
    cache = str(tmp_path / "cache")
    train = load_hh(str(hh_dir), "helpful-base", "train", cache_dir=cache)
    prompts = hh_prompts(train, "train")
    assert list(prompts.columns) == ["prompt", "split"] and set(prompts["split"]) == {"train"}
    assert len(prompts) == 6  # the row without an assistant turn has no prompt
    test = load_hh(str(hh_dir), "helpful-base", "test", cache_dir=cache)
    assert set(hh_prompts(test, "test")["split"]) == {"eval"}
    with pytest.raises(ValueError, match="unknown HH split"):
        hh_prompts(train, "dev")
    table, counts = build_prompt_table(
        load_hh_prompts(str(hh_dir), "helpful-base", cache_dir=cache), eval_fraction=0.5, seed=0
    )
    assert counts["train"] == 3 and counts["eval"] == 2  # MULTI, SINGLE, "Hi?"; the two test prompts
    texts = hh_sft_texts(train)
    assert list(texts.columns) == ["prompt_id", "prompt", "response"]
    assert len(texts) == 5 and texts["response"].iloc[0] == " About an hour."  # the empty one dropped


@pytest.mark.skipif(not HH_PROMPTS.exists(), reason=f"{HH_PROMPTS} absent (outside data, not in the repo)")
def test_real_hh_prompts_split_correctly() -> None:
    dialogues = pd.read_csv(HH_PROMPTS, keep_default_na=False, dtype=str)["Prompt"]
    read = read_prompt_file(HH_PROMPTS)["prompt"]
    for dialogue, expected in zip(dialogues, read, strict=True):
        prompt, response = split_dialogue(dialogue)
        assert prompt.endswith(ASSISTANT) and check_prompt(prompt) is None
        assert prompt + response == dialogue and not response.strip()
        assert prompt == expected
    # with an answer appended, the split gives the prompt back, earlier turns kept
    prompts = [split_dialogue(d + " Sure.")[0] for d in dialogues[:200]]
    assert prompts == read[:200].tolist()
    assert sum(p.count(ASSISTANT) > 1 for p in prompts) > 100  # most are multi-turn


def test_load_hh_hub_id_goes_to_load_dataset(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    calls = []

    def fake_load_dataset(path: str, **kwargs: object) -> datasets.Dataset:
        calls.append((path, kwargs))
        return datasets.Dataset.from_list(TEST_ROWS)

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    frame = load_hh("Anthropic/hh-rlhf", "helpful-base", "test")
    assert calls == [("Anthropic/hh-rlhf", {"data_dir": "helpful-base", "split": "test", "cache_dir": None})]
    assert frame["rejected"].tolist() == [r["rejected"] for r in TEST_ROWS]
