"""Tokenization, truncation and batching of pairs: prompts cut on the left (keeping the final
"Assistant:"), responses on the right, EOS only on finished responses, empty responses dropped."""

from __future__ import annotations

import random

import pandas as pd
import pytest
import torch

from bonbon.batching import collate, collate_pairs, tokenize_pairs
from bonbon.tables import PAIR_TEXT_COLUMNS, TableError, read_table

from helpers.tiny import build_tokenizer, hh_prompt, hh_response, tokenize_one


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return build_tokenizer(tmp_path_factory.mktemp("tokenizer"))


def decode(tokenizer, ids):
    return tokenizer.decode(ids, skip_special_tokens=False)


def test_multi_turn_prompt_cut_from_left_keeps_final_assistant(tokenizer):
    rng = random.Random(1)
    prompt, response = hh_prompt(rng, 4), hh_response(rng)
    n_prompt = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    n_response = len(tokenizer(response, add_special_tokens=False)["input_ids"])
    assert n_prompt > 30  # the cut below really cuts
    seq = tokenize_one(tokenizer, prompt, response, max_prompt_length=20, max_length=20 + n_response + 1)
    ids, start = seq["input_ids"], seq["prompt_length"]
    assert start == 20 and seq["prompt_truncated"]
    assert decode(tokenizer, ids[:start]).endswith("\n\nAssistant:")
    assert prompt.endswith(decode(tokenizer, ids[:start]))
    # the whole response fits: kept, with EOS
    assert decode(tokenizer, ids[start:-1]) == response
    assert ids[-1] == tokenizer.eos_token_id
    assert seq["response_length"] == n_response + 1 and not seq["response_truncated"]


def test_long_response_cut_at_its_end_without_eos(tokenizer):
    rng = random.Random(2)
    prompt, response = hh_prompt(rng, 3), hh_response(rng) + hh_response(rng)
    seq = tokenize_one(tokenizer, prompt, response, max_prompt_length=16, max_length=22)
    ids, start = seq["input_ids"], seq["prompt_length"]
    assert len(ids) == 22 and start == 16
    assert decode(tokenizer, ids[:start]).endswith("\n\nAssistant:")
    assert response.startswith(decode(tokenizer, ids[start:]))  # the START of the response is kept
    assert tokenizer.eos_token_id not in ids  # a cut response did not finish
    assert seq["response_truncated"] and seq["response_length"] == 6


def test_unfinished_response_gets_no_eos_and_empty_gives_none(tokenizer):
    seq = tokenize_one(tokenizer, "\n\nHuman: hi?\n\nAssistant:", " sure.", 16, 32, finished=False)
    assert tokenizer.eos_token_id not in seq["input_ids"]
    assert tokenize_one(tokenizer, "\n\nHuman: hi?\n\nAssistant:", "", 16, 32) is None
    with pytest.raises(ValueError, match="max_prompt_length < max_length"):
        tokenize_one(tokenizer, "\n\nHuman: hi?\n\nAssistant:", " sure.", 32, 32)


def pair_frame(rows: int, seed: int = 3) -> pd.DataFrame:
    rng = random.Random(seed)
    records = []
    for i in range(rows):
        records.append(
            {
                "prompt_id": f"p{i:03d}",
                "prompt": hh_prompt(rng, rng.randint(1, 4)),
                "chosen": hh_response(rng),
                "rejected": hh_response(rng),
                "chosen_reward": 1.0,
                "rejected_reward": 0.0,
                "chosen_idx": 0,
                "rejected_idx": 1,
                "n": 4,
            }
        )
    return pd.DataFrame(records)


def test_pair_file_drops_and_counts_empty_responses(tokenizer, tmp_path, caplog):
    frame = pair_frame(6)
    frame.loc[1, "chosen"] = ""
    frame.loc[4, "rejected"] = ""
    path = tmp_path / "n4.parquet"
    frame.to_parquet(path)
    with caplog.at_level("WARNING"):
        frame = read_table(path, PAIR_TEXT_COLUMNS)  # as training reads it
        examples, counts = tokenize_pairs(frame, tokenizer, max_prompt_length=24, max_length=48,
                                          source=str(path))
    assert [e["prompt_id"] for e in examples] == ["p000", "p002", "p003", "p005"]
    assert counts["dropped_empty"] == 2 and counts["kept"] == 4
    assert counts["dropped_empty_chosen"] == 1 and counts["dropped_empty_rejected"] == 1
    assert "dropped 2 of 6 pairs" in caplog.text and str(path) in caplog.text
    for e in examples:
        for side in ("chosen", "rejected"):
            ids = e[side]["input_ids"]
            assert len(ids) <= 48
            assert decode(tokenizer, ids[: e[side]["prompt_length"]]).endswith("\n\nAssistant:")


def test_finished_columns_decide_eos(tokenizer):
    frame = pair_frame(2)
    frame["chosen_finished"] = [True, False]
    frame["rejected_finished"] = [False, True]
    examples, _ = tokenize_pairs(frame, tokenizer, 24, 64)
    eos = tokenizer.eos_token_id
    assert [e["chosen"]["input_ids"][-1] == eos for e in examples] == [True, False]
    assert [e["rejected"]["input_ids"][-1] == eos for e in examples] == [False, True]
    # without the columns every response is taken as finished
    examples, _ = tokenize_pairs(pair_frame(2), tokenizer, 24, 64)
    assert all(e[s]["input_ids"][-1] == eos for e in examples for s in ("chosen", "rejected"))


def test_missing_columns_and_duplicate_keys_name_the_file(tokenizer, tmp_path):
    path = tmp_path / "bad.parquet"
    pair_frame(2).drop(columns=["rejected"]).to_parquet(path)
    with pytest.raises(TableError, match=r"bad\.parquet.*missing columns.*rejected"):
        read_table(path, PAIR_TEXT_COLUMNS)
    frame = pair_frame(2)
    frame["prompt_id"] = "same"
    with pytest.raises(TableError, match=r"bad\.parquet.*more than once"):
        tokenize_pairs(frame, tokenizer, 24, 48, source=str(path))


def test_collate_pairs_chosen_then_rejected_right_padded(tokenizer):
    examples, _ = tokenize_pairs(pair_frame(3), tokenizer, 24, 48)
    for e in examples:
        e["chosen_ref_logp"], e["rejected_ref_logp"] = -1.0, -2.0
    batch = collate_pairs(examples, pad_token_id=tokenizer.pad_token_id)
    rows = [e["chosen"] for e in examples] + [e["rejected"] for e in examples]
    assert batch["input_ids"].shape[0] == 6 and batch["n_pairs"] == 3
    assert batch["prompt_ids"] == ["p000", "p001", "p002"]
    assert batch["chosen_ref_logp"].tolist() == [-1.0] * 3
    for r, seq in enumerate(rows):
        n = len(seq["input_ids"])
        assert batch["input_ids"][r, :n].tolist() == seq["input_ids"]
        assert batch["attention_mask"][r].tolist() == [1] * n + [0] * (batch["input_ids"].shape[1] - n)
        assert (batch["input_ids"][r, n:] == tokenizer.pad_token_id).all()
        mask = batch["response_mask"][r]
        assert mask.sum().item() == seq["response_length"]
        assert mask[: seq["prompt_length"]].sum().item() == 0 and mask[seq["prompt_length"]].item() == 1
    # SFT examples (no rejected): chosen rows only
    sft = collate_pairs([{"prompt_id": "x", "chosen": rows[0]}], pad_token_id=0)
    assert sft["input_ids"].shape[0] == 1
    assert collate(rows[:1], 0)["input_ids"].dtype == torch.long
