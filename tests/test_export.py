"""Pairs out (bonbon.export): a pair table and its reference log-probs as TRL preference rows, written
with datasets and read back in each of its three forms; TRL's DPOTrainer (the ``bench`` extra) fed the
export's reference log-probs gives the workflow's own step-0 DPO loss on a policy that is not the
reference (so the loss is not log 2 and depends on every exported value)."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pandas as pd
import pytest
import torch

from bonbon.export import TRL_COLUMNS, to_trl, write_trl
from bonbon.reference import write_reference_logps
from bonbon.tables import TableError
from bonbon.train import config_from_dict, train

from helpers.tiny import hh_prompt, hh_response, save_tiny_policy

MAX_PROMPT, MAX_LEN, PAIRS, BETA = 200, 256, 8, 0.5


def pair_rows(rng: random.Random, count: int) -> pd.DataFrame:
    return pd.DataFrame([
        {"prompt_id": f"p{i:03d}", "prompt": hh_prompt(rng, rng.randint(1, 3)), "chosen": hh_response(rng),
         "rejected": hh_response(rng), "chosen_reward": 1.0 + i, "rejected_reward": -1.0 - i,
         "chosen_idx": i % 3, "rejected_idx": 3 + i % 2, "chosen_finished": True,
         "rejected_finished": i != 2, "n": 8}
        for i in range(count)
    ])


def ref_rows(pairs: pd.DataFrame) -> pd.DataFrame:
    """Reference rows in another order than the pairs, one emptied by truncation (NaN, length 0)."""
    ref = pairs[["prompt_id", "chosen_idx", "rejected_idx"]].copy()
    ref["chosen_ref_logp"] = -10.0 - np.arange(len(ref))
    ref["rejected_ref_logp"] = -20.0 - np.arange(len(ref))
    if len(ref) > 3:
        ref.loc[3, ["chosen_ref_logp", "rejected_ref_logp"]] = np.nan
    ref["chosen_length"], ref["rejected_length"] = 5, 6
    return ref.iloc[::-1].reset_index(drop=True)


def test_text_rows_join_reference_logps_by_key_and_leave_out_emptied_pairs():
    pairs = pair_rows(random.Random(0), 6)
    rows, counts = to_trl(pairs, ref_rows(pairs))
    assert counts == {"pairs": 6, "exported": 5, "without_reference": 1, "format": "standard"}
    assert list(rows.columns[:5]) == list(TRL_COLUMNS)
    # pair-table order, p003 out
    assert rows["prompt_id"].tolist() == ["p000", "p001", "p002", "p004", "p005"]
    # joined by (prompt_id, chosen_idx, rejected_idx), not by row position (the reference rows are reversed)
    assert rows["ref_chosen_logps"].tolist() == [-10.0, -11.0, -12.0, -14.0, -15.0]
    assert rows["ref_rejected_logps"].tolist() == [-20.0, -21.0, -22.0, -24.0, -25.0]
    assert rows.loc[2, "rejected_finished"] is np.False_ and rows.loc[0, "chosen"] == pairs.loc[0, "chosen"]


def test_chat_prompts_give_trl_conversational_rows():
    pairs = pair_rows(random.Random(1), 3)
    messages = [[{"role": "system", "content": "Be kind."}, {"role": "user", "content": f"question {i}?"}]
                for i in range(3)]
    prompts = pd.DataFrame({"prompt_id": pairs["prompt_id"][::-1].tolist(), "prompt": "rendered",
                            "split": "train", "messages": [json.dumps(m) for m in messages[::-1]]})
    rows, counts = to_trl(pairs, ref_rows(pairs), prompts)
    assert counts["format"] == "conversational"
    assert rows.loc[1, "prompt"] == messages[1]
    assert rows.loc[1, "chosen"] == [{"role": "assistant", "content": pairs.loc[1, "chosen"].strip()}]
    assert rows.loc[2, "rejected"] == [{"role": "assistant", "content": pairs.loc[2, "rejected"].strip()}]
    with pytest.raises(TableError, match="not in the prompt table"):
        to_trl(pairs, ref_rows(pairs), prompts.iloc[1:])


def test_a_reference_table_of_other_pairs_is_an_error():
    pairs = pair_rows(random.Random(2), 4)
    with pytest.raises(TableError, match=r"1 pairs have no reference log-prob row \(e.g. \('p000'"):
        to_trl(pairs, ref_rows(pairs).query("prompt_id != 'p000'"))


@pytest.mark.parametrize("chat", [False, True])
def test_the_three_files_read_back_as_the_same_rows(tmp_path, chat):
    import datasets

    # original pairs: no n
    pairs = pair_rows(random.Random(3), 5).assign(n=pd.array([pd.NA] * 5, dtype="Int64"))
    prompts = pd.DataFrame({"prompt_id": pairs["prompt_id"], "prompt": pairs["prompt"], "split": "train",
                            "messages": [json.dumps([{"role": "user", "content": f"q{i}"}])
                                         for i in range(5)]})
    rows, _ = to_trl(pairs, ref_rows(pairs), prompts if chat else None)
    write_trl(rows, tmp_path / "folder", tmp_path / "pairs.parquet", tmp_path / "pairs.jsonl")
    forms = {
        "save_to_disk": datasets.load_from_disk(str(tmp_path / "folder")),
        "parquet": datasets.load_dataset("parquet", data_files=str(tmp_path / "pairs.parquet"),
                                         split="train"),
        "jsonl": datasets.load_dataset("json", data_files=str(tmp_path / "pairs.jsonl"), split="train"),
    }
    for form, dataset in forms.items():
        assert dataset.num_rows == 4, form
        for column in ("prompt", "chosen", "rejected", "ref_chosen_logps", "prompt_id", "rejected_finished"):
            assert dataset[column] == rows[column].tolist(), (form, column)
        assert dataset["n"] == [None] * 4, form


# ------------------------------------------------------------------------------------------- TRL


@pytest.fixture(scope="module")
def trl_world(tmp_path_factory):
    """A reference model, 8 pairs (every response finished, nothing truncated: TRL and the workflow then
    see the same tokens), their reference log-probs and the export; a policy that is the reference with
    noise added to every weight."""
    pytest.importorskip("trl", reason="TRL is not installed (pip install -e '.[bench]')")
    root = tmp_path_factory.mktemp("export_trl")
    tokenizer = save_tiny_policy(root / "reference", max_position_embeddings=512, initializer_range=0.2)
    pairs = pair_rows(random.Random(4), PAIRS).assign(rejected_finished=True)
    pairs.to_parquet(root / "pairs.parquet")
    write_reference_logps(root / "reference", root / "pairs.parquet", root / "ref.parquet", MAX_PROMPT,
                          MAX_LEN, 8)
    rows, counts = to_trl(pairs, pd.read_parquet(root / "ref.parquet"))
    assert counts["exported"] == PAIRS
    write_trl(rows, root / "export", root / "export.parquet", root / "export.jsonl")
    from transformers import AutoModelForCausalLM

    policy = AutoModelForCausalLM.from_pretrained(root / "reference")
    torch.manual_seed(1)
    with torch.no_grad():
        for weight in policy.parameters():
            weight.add_(0.1 * torch.randn_like(weight))
    policy.save_pretrained(root / "policy")
    tokenizer.save_pretrained(root / "policy")
    return {"root": root, "tokenizer": tokenizer}


def trl_step0_loss(world, dataset, trainer_class) -> float:
    from transformers import AutoModelForCausalLM
    from trl import DPOConfig

    config = DPOConfig(output_dir=str(world["root"] / "trl"), per_device_train_batch_size=PAIRS, max_steps=1,
                       learning_rate=1e-9, beta=BETA, loss_type=["sigmoid"], max_length=MAX_LEN,
                       precompute_ref_log_probs=True, gradient_checkpointing=False, bf16=False, use_cpu=True,
                       report_to="none", save_strategy="no", disable_tqdm=True, logging_steps=1, seed=0)
    losses = []

    class Recording(trainer_class):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            loss = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            losses.append(float(loss.detach()))
            return loss

    model = AutoModelForCausalLM.from_pretrained(world["root"] / "policy", dtype=torch.float32)
    Recording(model=model, args=config, train_dataset=dataset, processing_class=world["tokenizer"]).train()
    return losses[0]


def test_trl_dpo_on_the_export_gives_the_workflows_step0_loss(trl_world):
    import datasets
    from trl import DPOTrainer

    class PrecomputedDPOTrainer(DPOTrainer):
        """TRL 1.16 runs its own reference pass under precompute_ref_log_probs even when the dataset has the
        columns (and then fails on duplicate columns, pinned below): keep the export's."""

        def _precompute_ref_logps(self, dataset, name, batch_size):
            if {"ref_chosen_logps", "ref_rejected_logps"} <= set(dataset.column_names):
                return dataset
            return super()._precompute_ref_logps(dataset, name, batch_size)

    root = trl_world["root"]
    options = {"loss": "dpo", "beta": BETA, "batch_size": PAIRS, "max_steps": 1, "learning_rate": 1e-9,
               "warmup_steps": 0, "max_length": MAX_LEN, "max_prompt_length": MAX_PROMPT}
    train(root / "policy", root / "pairs.parquet", root / "ref.parquet", root / "ours",
          config_from_dict(options))
    ours = float(pd.read_csv(root / "ours" / "metrics.csv")["loss"].iloc[0])
    assert abs(ours - math.log(2)) > 1e-2  # the policy is not the reference: the reference values matter
    for dataset in (datasets.load_from_disk(str(root / "export")),
                    datasets.load_dataset("json", data_files=str(root / "export.jsonl"), split="train")):
        assert trl_step0_loss(trl_world, dataset, PrecomputedDPOTrainer) == pytest.approx(ours, abs=2e-6)
    with pytest.raises(ValueError, match="duplicated"):  # stock TRL 1.16 on a dataset with the columns
        trl_step0_loss(trl_world, datasets.load_from_disk(str(root / "export")), DPOTrainer)
