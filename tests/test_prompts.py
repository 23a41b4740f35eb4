import pandas as pd
import pytest

from bonbon.prompts import (
    ASSISTANT,
    PromptFileError,
    build_prompt_table,
    check_prompt,
    prompt_id,
    read_prompt_file,
    split_turns,
    truncate_prompt_ids,
)

from conftest import HH_PROMPTS

MULTI_TURN = ("\n\nHuman: Hi there\n\nAssistant: Hello! How can I help?\n\nHuman: Tell me a joke about cats."
              "\n\nAssistant:")


def test_split_turns_multi_turn():
    turns = split_turns(MULTI_TURN)
    assert [role for role, _ in turns] == ["Human", "Assistant", "Human", "Assistant"]
    assert turns[2][1] == " Tell me a joke about cats."
    assert turns[3][1] == ""


@pytest.mark.parametrize(
    ("prompt", "problem"),
    [
        (MULTI_TURN, None),
        (MULTI_TURN + " ", None),  # the reference CSV keeps a trailing space after some prompts
        ("Tell me a joke.\n\nAssistant:", "does not start"),
        ("\n\nHuman: Tell me a joke.", "does not end"),
        ("", "empty"),
    ],
)
def test_check_prompt(prompt, problem):
    result = check_prompt(prompt)
    assert (result is None) if problem is None else (problem in result)


def test_left_truncation_keeps_final_assistant(toy_models):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(toy_models["base"])
    ids = tokenizer(MULTI_TURN * 3, add_special_tokens=False)["input_ids"]  # three dialogues run together
    kept = truncate_prompt_ids(ids, 12)
    assert len(kept) == 12
    assert kept == ids[-12:]
    text = tokenizer.decode(kept)
    assert text.endswith(ASSISTANT)
    assert "cats." in text  # the final human turn survives, the first turns do not
    assert truncate_prompt_ids(ids, 10_000) == ids
    with pytest.raises(ValueError):
        truncate_prompt_ids(ids, 0)


def test_read_prompt_file_names_file_and_row(tmp_path):
    path = tmp_path / "prompts.csv"
    pd.DataFrame({"Prompt": [MULTI_TURN, "\n\nHuman: no assistant turn", MULTI_TURN]}).to_csv(
        path, index=False)
    with pytest.raises(PromptFileError, match=r"prompts\.csv: row 2: does not end"):
        read_prompt_file(path)
    jsonl = tmp_path / "prompts.jsonl"
    jsonl.write_text('{"text": "x"}\n')
    with pytest.raises(PromptFileError, match=r"prompts\.jsonl: no 'prompt' or 'Prompt' column"):
        read_prompt_file(jsonl)
    with pytest.raises(PromptFileError, match="does not exist"):
        read_prompt_file(tmp_path / "missing.csv")
    bad_split = tmp_path / "split.parquet"
    pd.DataFrame({"prompt": [MULTI_TURN], "split": ["test"]}).to_parquet(bad_split)
    with pytest.raises(PromptFileError, match=r"split\.parquet: row 1: split 'test'"):
        read_prompt_file(bad_split)


def test_prompt_table_ids_splits_and_dedup():
    prompts = pd.DataFrame({"prompt": [f"\n\nHuman: question {i}?\n\nAssistant:" for i in range(400)] * 2})
    table, counts = build_prompt_table(prompts, eval_fraction=0.25, seed=3)
    assert counts["duplicates_dropped"] == 400
    assert len(table) == 400 and table["prompt_id"].is_unique
    assert table["prompt_id"].tolist() == sorted(table["prompt_id"])
    assert 0.18 < counts["eval"] / 400 < 0.32
    # a prompt keeps its id and split when the set changes
    half, _ = build_prompt_table(prompts.iloc[:200], eval_fraction=0.25, seed=3)
    merged = half.merge(table, on="prompt_id", suffixes=("_half", "_all"))
    assert len(merged) == 200 and (merged["split_half"] == merged["split_all"]).all()
    assert (prompt_id(prompts["prompt"].iloc[0])
            == table.set_index("prompt")["prompt_id"][prompts["prompt"].iloc[0]])
    sub, counts = build_prompt_table(prompts, eval_fraction=0.25, seed=3, max_prompts=50)
    assert len(sub) == 50 and set(sub["prompt_id"]) <= set(table["prompt_id"])


@pytest.mark.skipif(not HH_PROMPTS.exists(), reason=f"real HH prompts not present at {HH_PROMPTS}")
def test_real_hh_prompts_load_and_truncate(toy_models):
    from transformers import AutoTokenizer

    prompts = read_prompt_file(HH_PROMPTS)
    assert len(prompts) == 2850
    table, counts = build_prompt_table(prompts, eval_fraction=0.1, seed=0)
    assert counts["duplicates_dropped"] == 16 and len(table) == 2834
    multi = table[table["prompt"].map(lambda p: len(split_turns(p)) > 2)]
    assert len(multi) / len(table) > 0.8  # about 88% are multi-turn
    tokenizer = AutoTokenizer.from_pretrained(toy_models["base"])
    longest = table["prompt"].map(len).idxmax()
    ids = tokenizer(table["prompt"][longest], add_special_tokens=False)["input_ids"]
    kept = tokenizer.decode(truncate_prompt_ids(ids, 64))
    assert len(ids) > 64 and kept.endswith(ASSISTANT)
    assert table["prompt"][longest].endswith(kept)
