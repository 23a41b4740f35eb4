import math

import pandas as pd
import pytest
import torch

from bonbon.generate import (
    SamplingConfig,
    filter_logits,
    generate_samples,
    gumbel_sample,
    load_policy,
    plan_batches,
)
from bonbon.prompts import prompt_id
from bonbon.toy import make_prompt_set


def test_gumbel_sample_matches_softmax():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0, 0.5]])
    probs = logits.softmax(-1)[0]
    generator = torch.Generator().manual_seed(0)
    draws = 20_000
    counts = torch.zeros(5)
    for _ in range(draws):
        counts[gumbel_sample(logits, [generator])[0]] += 1
    chi2 = float((((counts - draws * probs) ** 2) / (draws * probs)).sum())
    assert chi2 < 18.47  # chi-square, 4 degrees of freedom, p = 0.001


def test_filter_logits_top_k_top_p_temperature():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    top_k = filter_logits(logits, 1.0, 2, 1.0)
    assert torch.isinf(top_k[0, 2:]).all() and torch.isfinite(top_k[0, :2]).all()
    top_p = filter_logits(logits, 1.0, 0, 0.7)  # 0.5 < 0.7, 0.5 + 0.3 covers it: keep two
    assert torch.isfinite(top_p[0, :2]).all() and torch.isinf(top_p[0, 2:]).all()
    keep_one = filter_logits(logits, 1.0, 0, 0.4)
    assert torch.isfinite(keep_one[0, 0]) and torch.isinf(keep_one[0, 1:]).all()
    hot = filter_logits(logits, 2.0, 0, 1.0)
    assert torch.allclose(hot, logits / 2)


def test_plan_batches_sorted_by_length():
    plan = plan_batches([5, 1, 3, 3, 9], ["e", "a", "c", "b", "d"], 2)
    assert plan == [[1, 3], [2, 0], [4]]


@pytest.fixture(scope="module")
def policy(toy_models):
    torch.set_num_threads(2)
    return load_policy(str(toy_models["base"]))


@pytest.fixture(scope="module")
def prompts():
    table = make_prompt_set(12, 0.0, seed=5)
    table["prompt_id"] = table["prompt"].map(prompt_id)
    return table


def test_samples_do_not_depend_on_batching_order_or_subset(policy, prompts):
    model, tokenizer = policy
    cfg = SamplingConfig(n=4, max_new_tokens=24, batch_size=48, seed=11)
    full, counts = generate_samples(model, tokenizer, prompts, cfg)
    assert counts["samples"] == 48 and len(full) == 48
    assert full.groupby("prompt_id")["sample_idx"].apply(list).map(lambda s: s == [0, 1, 2, 3]).all()
    small_batches, _ = generate_samples(model, tokenizer, prompts.iloc[::-1], SamplingConfig(**{**cfg.__dict__, "batch_size": 4}))
    pd.testing.assert_frame_equal(full, small_batches)
    subset, _ = generate_samples(model, tokenizer, prompts.iloc[3:7], cfg)
    pd.testing.assert_frame_equal(subset, full[full["prompt_id"].isin(prompts["prompt_id"].iloc[3:7])].reset_index(drop=True))
    other_seed, _ = generate_samples(model, tokenizer, prompts, SamplingConfig(**{**cfg.__dict__, "seed": 12}))
    assert (other_seed["response"] != full["response"]).mean() > 0.5
    # samples of one prompt are different draws, not copies
    assert full.groupby("prompt_id")["response"].nunique().min() > 1


class ForceTokens:
    """A forward hook on the LM head that forces, at each decoding step, one token (or bans EOS)."""

    def __init__(self, tokens: list[int] | None, eos: int):
        self.tokens, self.eos, self.calls = tokens, eos, 0

    def __call__(self, module, args, output):
        forced = torch.full_like(output, -1e9)
        if self.tokens is None:  # never stop: ban EOS
            forced = output.clone()
            forced[..., self.eos] = -1e9
        else:
            forced[..., self.tokens[min(self.calls, len(self.tokens) - 1)]] = 0.0
        self.calls += 1
        return forced


def test_token_limit_is_unfinished_and_gets_no_eos(policy, prompts):
    model, tokenizer = policy
    hook = model.get_output_embeddings().register_forward_hook(ForceTokens(None, tokenizer.eos_token_id))
    try:
        cfg = SamplingConfig(n=2, max_new_tokens=5, batch_size=8, stop_strings=())
        samples, counts = generate_samples(model, tokenizer, prompts.iloc[:2], cfg)
    finally:
        hook.remove()
    assert (~samples["finished"]).all() and counts["unfinished"] == 4
    assert (samples["n_tokens"] == 5).all()
    assert not samples["response"].str.contains(tokenizer.eos_token, regex=False).any()


def test_stops_at_eos_and_at_a_new_human_turn(policy, prompts):
    model, tokenizer = policy
    eos = tokenizer.eos_token_id
    hook = model.get_output_embeddings().register_forward_hook(ForceTokens([eos], eos))
    try:
        samples, _ = generate_samples(model, tokenizer, prompts.iloc[:1], SamplingConfig(n=2, max_new_tokens=8))
    finally:
        hook.remove()
    assert samples["finished"].all() and (samples["response"] == "").all() and (samples["n_tokens"] == 0).all()

    target = tokenizer(" Sure! Check the bread.\n\nHuman: and more text here", add_special_tokens=False)["input_ids"]
    forcer = ForceTokens(target, eos)
    hook = model.get_output_embeddings().register_forward_hook(forcer)
    try:
        samples, _ = generate_samples(model, tokenizer, prompts.iloc[:1], SamplingConfig(n=1, max_new_tokens=40))
    finally:
        hook.remove()
    assert samples["response"].tolist() == [" Sure! Check the bread."]
    assert samples["finished"].all()
    assert samples["n_tokens"].iloc[0] == len(tokenizer(" Sure! Check the bread.", add_special_tokens=False)["input_ids"])
    assert forcer.calls < len(target)  # decoding stopped at the turn, it did not run on to the limit


def test_long_prompts_are_cut_from_the_left(policy):
    model, tokenizer = policy
    long = "\n\nHuman: Hello.\n\nAssistant: Hi." * 30 + "\n\nHuman: How do I bake my bread?\n\nAssistant:"
    table = pd.DataFrame({"prompt": [long], "prompt_id": [prompt_id(long)]})
    samples, counts = generate_samples(model, tokenizer, table, SamplingConfig(n=2, max_new_tokens=4, max_prompt_length=16))
    assert counts["prompts_cut"] == 1 and samples["prompt_cut"].all()
    assert samples["prompt"].iloc[0] == long  # the table keeps the whole prompt
    assert math.isfinite(samples["n_tokens"].mean())


def test_shards_together_are_the_unsharded_run(policy, prompts):
    model, tokenizer = policy
    cfg = SamplingConfig(n=2, max_new_tokens=12, batch_size=4, seed=5)  # 2 prompts a batch: 6 batches
    whole, _ = generate_samples(model, tokenizer, prompts, cfg)
    parts = [generate_samples(model, tokenizer, prompts, cfg, shard=i, shards=4)[0] for i in range(4)]
    assert all(len(p) > 0 for p in parts[:2])
    gathered = pd.concat(parts).sort_values(["prompt_id", "sample_idx"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(gathered, whole)
    with pytest.raises(ValueError, match="shard 4 is not in 0..3"):
        generate_samples(model, tokenizer, prompts, cfg, shard=4, shards=4)
