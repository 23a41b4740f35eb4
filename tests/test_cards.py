"""Model cards (bonbon.cards): the README.md huggingface_hub's ModelCard reads back (Hub fields, the run,
its evaluation row with standard errors, command and config) and the evaluation's sampling settings in
generation_config.json, which transformers' GenerationConfig reads back with the saved EOS kept."""

from __future__ import annotations

import json
import math

import pytest

from bonbon.cards import card_metadata, card_text, update_generation_config, write_card
from bonbon.theory import beta_star

SAMPLING = {"temperature": 0.7, "top_k": 0, "top_p": 0.9, "max_new_tokens": 48}
RUN = {"dataset": "hh", "n": 8, "loss": "bonbon", "beta": beta_star(8), "beta_auto": True, "alpha": 0.005,
       "training": {"learning_rate": 1e-4, "batch_size": 8}, "pairs": "n8"}
ROW = {"policy": "hh-n8-bonbon-betaauto-alpha0.005-step32", "run": "hh-n8-bonbon-betaauto-alpha0.005",
       "step": 32, "kind": "trained", "win_rate": 0.6875, "win_rate_se": 0.0312, "kl": 1.25, "kl_se": 0.11,
       "judge_win_rate": float("nan"), "n_prompts": 160}


def model_dir(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "gpt_neox"}))
    # what save_pretrained writes for the toy policy
    (folder / "generation_config.json").write_text(json.dumps(
        {"_from_model_config": True, "bos_token_id": 0, "eos_token_id": 0, "pad_token_id": 1}))
    return folder


def test_the_card_reads_back_with_huggingface_hub(tmp_path):
    from huggingface_hub import ModelCard

    folder = model_dir(tmp_path)
    meta = card_metadata(ROW["policy"], RUN, ROW, "EleutherAI/pythia-2.8b",
                         {"source": "hf", "path": "Anthropic/hh-rlhf"})
    text = card_text(meta, "snakemake --cores 2 --configfile config/hh-pythia28.yaml", {"n_values": [2, 8]},
                     SAMPLING)
    card = ModelCard.load(write_card(folder, text))
    data = card.data.to_dict()
    assert data["base_model"] == "EleutherAI/pythia-2.8b" and data["datasets"] == ["Anthropic/hh-rlhf"]
    assert data["library_name"] == "transformers" and {"bonbon", "best-of-n"} <= set(data["tags"])
    b = data["bonbon"]
    assert (b["loss"], b["n"], b["alpha"], b["steps"], b["learning_rate"]) == ("bonbon", 8, 0.005, 32, 1e-4)
    assert b["beta"] == pytest.approx(0.0275482, abs=1e-7) and b["beta_auto"] is True
    assert b["evaluation"]["win_rate_se"] == 0.0312 and b["evaluation"]["kl"] == 1.25
    assert b["evaluation"]["judge_win_rate"] is None  # NaN (no judge) as YAML null
    assert "- win_rate: 0.6875 ± 0.0312" in card.text and "- kl: 1.25 ± 0.11" in card.text
    assert "judge_win_rate:" not in card.text.split("## Evaluation")[1].split("|")[0]  # no headline for NaN
    assert "snakemake --cores 2 --configfile config/hh-pythia28.yaml" in card.text
    assert "n_values:\n- 2\n- 8" in card.text and '"top_p": 0.9' in card.text


def test_toy_and_local_models_stay_out_of_the_hub_fields(tmp_path):
    from huggingface_hub import ModelCard

    meta = card_metadata("toy-n2-dpo-beta0.1", {**RUN, "loss": "dpo", "beta": 0.1, "beta_auto": False,
                                                "alpha": None, "n": 2, "dataset": "toy"},
                         {**ROW, "step": 24}, "toy", {"source": "toy"})
    card = ModelCard.load(write_card(model_dir(tmp_path), card_text(meta, "snakemake", {}, SAMPLING)))
    data = card.data.to_dict()
    assert "base_model" not in data and "datasets" not in data  # no Hub id to name
    assert data["bonbon"]["base_model"] == "toy" and data["bonbon"]["dataset"] == {"name": "toy",
                                                                                    "source": "toy",
                                                                                    "path": None}
    assert data["bonbon"]["alpha"] is None and "dpo" in data["tags"]
    # a preference dataset's own pairs: the run has no n, the dataset states it; the summary's step is a float
    original = card_metadata("prefs-original-ipo-betaauto", {**RUN, "n": None, "loss": "ipo", "alpha": None},
                             {**ROW, "step": 12.0}, "toy",
                             {"source": "hf", "path": str(tmp_path / "prefs"), "n": 4})
    assert original["bonbon"]["n"] == 4 and original["bonbon"]["steps"] == 12
    assert isinstance(original["bonbon"]["steps"], int) and "datasets" not in original  # a local path
    with pytest.raises(FileNotFoundError, match="config.json missing"):
        write_card(tmp_path, "---\n---\n")


def test_generation_config_gets_the_evaluations_sampling_and_keeps_eos(tmp_path):
    from transformers import GenerationConfig

    folder = model_dir(tmp_path)
    update_generation_config(folder, SAMPLING)
    config = GenerationConfig.from_pretrained(folder)
    assert config.do_sample is True and config.temperature == 0.7 and config.top_p == 0.9
    assert config.top_k == 0 and config.max_new_tokens == 48
    assert (config.eos_token_id, config.pad_token_id) == (0, 1)
    assert not math.isnan(config.temperature) and not list(folder.glob(".*tmp"))
