import math

import pandas as pd
import pytest
import torch

from bonbon.generate import generate_samples, plan_batches, sample_logps
from bonbon.models import load_policy
from bonbon.prompts import prompt_id
from bonbon.sampling import SamplingConfig, filter_logits, gumbel_sample, stop_index
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


def test_gumbel_sample_is_the_out_of_place_formula_bit_for_bit():
    """The in-place sampler draws what argmax(logits.double() - log(-log(u))) draws, u from each row's
    generator, token for token, and leaves every generator where that formula leaves it (the workflow's
    samples are unchanged by it); filter_logits at temperature 1 is the identity."""
    logits = torch.randn(6, 5000, generator=torch.Generator().manual_seed(3)) * 4

    def generators():
        return [torch.Generator().manual_seed(100 + i) for i in range(6)]

    expected_generators, drawn_generators = generators(), generators()
    for _ in range(5):
        noise = torch.stack([torch.rand(5000, generator=g, dtype=torch.float64) for g in expected_generators])
        expected = torch.argmax(logits.double() - torch.log(-torch.log(noise.clamp_min(1e-300))), dim=-1)
        assert torch.equal(gumbel_sample(filter_logits(logits, 1.0, 0, 1.0), drawn_generators), expected)
    assert all(torch.equal(a.get_state(), b.get_state())
               for a, b in zip(expected_generators, drawn_generators, strict=True))
    assert torch.equal(filter_logits(logits, 1.0, 0, 1.0), logits)
    untouched = torch.randn(6, 5000, generator=torch.Generator().manual_seed(3)) * 4
    assert torch.equal(logits, untouched)


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


def test_stop_index_is_the_earliest_stop_string():
    stops = ("\n\nHuman:", "\n\nAssistant:")
    assert stop_index(" Sure.\n\nAssistant: more\n\nHuman: x", stops) == 6
    assert stop_index(" Sure.\n\nHuman: x\n\nAssistant:", stops) == 6
    assert stop_index(" Sure.\n\nHum", stops) is None and stop_index("", ()) is None


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
    small_batches, _ = generate_samples(model, tokenizer, prompts.iloc[::-1],
                                        SamplingConfig(**{**cfg.__dict__, "batch_size": 4}))
    pd.testing.assert_frame_equal(full, small_batches)
    subset, _ = generate_samples(model, tokenizer, prompts.iloc[3:7], cfg)
    pd.testing.assert_frame_equal(subset, full[full["prompt_id"].isin(prompts["prompt_id"].iloc[3:7])]
                                  .reset_index(drop=True))
    other_seed, _ = generate_samples(model, tokenizer, prompts,
                                     SamplingConfig(**{**cfg.__dict__, "seed": 12}))
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
        samples, _ = generate_samples(model, tokenizer, prompts.iloc[:1],
                                      SamplingConfig(n=2, max_new_tokens=8))
    finally:
        hook.remove()
    assert (samples["finished"].all() and (samples["response"] == "").all()
            and (samples["n_tokens"] == 0).all())

    target = tokenizer(" Sure! Check the bread.\n\nHuman: and more text here",
                       add_special_tokens=False)["input_ids"]
    forcer = ForceTokens(target, eos)
    hook = model.get_output_embeddings().register_forward_hook(forcer)
    try:
        samples, _ = generate_samples(model, tokenizer, prompts.iloc[:1],
                                      SamplingConfig(n=1, max_new_tokens=40))
    finally:
        hook.remove()
    assert samples["response"].tolist() == [" Sure! Check the bread."]
    assert samples["finished"].all()
    assert samples["n_tokens"].iloc[0] == len(tokenizer(" Sure! Check the bread.",
                                                        add_special_tokens=False)["input_ids"])
    assert forcer.calls < len(target)  # decoding stopped at the turn, it did not run on to the limit


def test_long_prompts_are_cut_from_the_left(policy):
    model, tokenizer = policy
    long = "\n\nHuman: Hello.\n\nAssistant: Hi." * 30 + "\n\nHuman: How do I bake my bread?\n\nAssistant:"
    table = pd.DataFrame({"prompt": [long], "prompt_id": [prompt_id(long)]})
    samples, counts = generate_samples(model, tokenizer, table,
                                       SamplingConfig(n=2, max_new_tokens=4, max_prompt_length=16))
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


def test_blocks_of_sample_indices_are_the_rows_of_one_run(policy, prompts):
    """Samples 0..7 drawn as blocks [0, 2), [2, 4), [4, 8) (the workflow's jobs) are the one run's rows."""
    from dataclasses import replace

    from bonbon.sampling import sample_blocks

    model, tokenizer = policy
    cfg = SamplingConfig(n=8, max_new_tokens=12, batch_size=16, seed=5)
    whole, _ = generate_samples(model, tokenizer, prompts, cfg)
    assert sample_blocks(8) == [(0, 2), (2, 4), (4, 8)] and sample_blocks(5) == sample_blocks(8)
    assert sample_blocks(2) == [(0, 2)] and sample_blocks(16)[:3] == sample_blocks(8)
    blocks = [generate_samples(model, tokenizer, prompts, replace(cfg, n=stop - first, first_sample=first))[0]
              for first, stop in sample_blocks(8)]
    assert [sorted(b["sample_idx"].unique()) for b in blocks] == [[0, 1], [2, 3], [4, 5, 6, 7]]
    gathered = pd.concat(blocks).sort_values(["prompt_id", "sample_idx"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(gathered, whole)
    # a block's rows are not the first rows of another seed: the index, not the position, seeds a row
    shifted, _ = generate_samples(model, tokenizer, prompts, replace(cfg, n=2, first_sample=2))
    first, _ = generate_samples(model, tokenizer, prompts, replace(cfg, n=2))
    assert not shifted["response"].reset_index(drop=True).equals(first["response"].reset_index(drop=True))


# ---------------------------------------------------------------------------------------- pins
# Decoding positions and the evaluation's prompt cut, checked against a full forward pass of a model
# whose rotary embedding covers every dimension (the toy model's 25% rotary hides a position error
# to about 1e-3 in the logits).


@pytest.fixture(scope="module")
def rotary_model(policy):
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    _, tokenizer = policy
    torch.manual_seed(0)
    config = GPTNeoXConfig(
        vocab_size=len(tokenizer), hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=128, max_position_embeddings=512, rotary_pct=1.0, initializer_range=0.2,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    return GPTNeoXForCausalLM(config).eval(), tokenizer


class RecordingSampler:
    """``sample_prompt_batch`` that records the prompt ids it is given, the ids it draws and, for every
    drawn token, its log-prob under the logits it was drawn from (temperature 1, no top-k/top-p)."""

    def __init__(self):
        self.prompt_ids: dict[str, list[int]] = {}
        self.drawn: dict[tuple[str, int], list[int]] = {}
        self.logps: dict[tuple[str, int], torch.Tensor] = {}

    def __call__(self, model, tokenizer, prompt_ids, keys, cfg):
        from bonbon.generate import sample_prompt_batch

        calls = []
        hook = model.register_forward_hook(
            lambda m, a, out: calls.append(out.logits[:, -1].float().log_softmax(-1)))
        try:
            results = sample_prompt_batch(model, tokenizer, prompt_ids, keys, cfg)
        finally:
            hook.remove()
        drawn = [ids for per_prompt in results for ids, _ in per_prompt]  # row r: prompt r // n, sample r % n
        per_row: list[list[float]] = [[] for _ in drawn]
        for step, logps in enumerate(calls):
            # the prompt pass serves every sample of its prompt; each later pass only the rows still
            # decoding, in row order
            rows = [r for r, ids in enumerate(drawn) if len(ids) > step]
            assert logps.shape[0] == (len(prompt_ids) if step == 0 else len(rows))
            for k, r in enumerate(rows):
                per_row[r].append(logps[r // cfg.n if step == 0 else k, drawn[r][step]].item())
        for r, ids in enumerate(drawn):
            key = keys[r // cfg.n]
            self.prompt_ids[key] = list(prompt_ids[r // cfg.n])
            self.drawn[(key, r % cfg.n)] = list(ids)
            self.logps[(key, r % cfg.n)] = torch.tensor(per_row[r])
        return results


def forward_logps(model, prompt_ids: list[int], response_ids: list[int]) -> torch.Tensor:
    """log pi of each response token from one forward pass over the unpadded prompt + response."""
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([list(prompt_ids) + list(response_ids)])).logits[0].float()
    steps = torch.arange(len(response_ids)) + len(prompt_ids) - 1
    return logits.log_softmax(-1)[steps, torch.tensor(response_ids)]


def test_kv_cache_sampler_log_probs_equal_a_full_forward_pass(rotary_model):
    """Left-padded prompts of different lengths decoded with the KV cache: every drawn token's log-prob
    is the one a full forward pass gives it, so the decoding position ids are right."""
    model, tokenizer = rotary_model
    texts = make_prompt_set(6, 0.0, seed=2)["prompt"].tolist()
    prompt_ids = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    assert len({len(p) for p in prompt_ids}) >= 3  # different lengths: left padding in the batch
    recorder = RecordingSampler()
    recorder(model, tokenizer, prompt_ids, [f"p{i}" for i in range(6)],
             SamplingConfig(n=2, max_new_tokens=12, seed=3))
    assert sum(len(ids) for ids in recorder.drawn.values()) > 60
    for key, ids in recorder.drawn.items():
        expected = forward_logps(model, recorder.prompt_ids[key[0]], ids)
        torch.testing.assert_close(recorder.logps[key], expected, atol=1e-4, rtol=0)


def test_evaluation_log_probs_of_long_prompts_use_the_prompt_generation_saw(rotary_model):
    """Prompts longer than max_prompt_length: sample_logps (the KL estimate's log pi) is computed on the
    very prompt ids the sampler was given, and equals the sampler's own log-probs."""
    model, tokenizer = rotary_model
    turn = "\n\nHuman: Hello, how are you today?\n\nAssistant: Fine, thanks."
    texts = [turn * 4 + "\n\nHuman: How do I bake my bread?\n\nAssistant:",
             turn * 2 + "\n\nHuman: Can you help me fix the bike?\n\nAssistant:",
             "\n\nHuman: Hi?\n\nAssistant:"]
    table = pd.DataFrame({"prompt": texts, "prompt_id": [prompt_id(t) for t in texts]})
    recorder = RecordingSampler()
    cfg = SamplingConfig(n=2, max_new_tokens=10, max_prompt_length=24, seed=4)
    samples, counts = generate_samples(model, tokenizer, table, cfg, sample_batch=recorder)
    assert counts["prompts_cut"] == 2
    got = sample_logps(model, tokenizer, samples, cfg.max_prompt_length, batch_size=4)
    for row, value in zip(samples.itertuples(), got, strict=True):
        ids = [int(t) for t in row.response_ids]
        assert ids == recorder.drawn[(row.prompt_id, row.sample_idx)]
        seen = recorder.prompt_ids[row.prompt_id]
        assert len(seen) <= cfg.max_prompt_length
        assert value == pytest.approx(forward_logps(model, seen, ids).sum().item(), abs=1e-4)
        assert value == pytest.approx(recorder.logps[(row.prompt_id, row.sample_idx)].sum().item(), abs=1e-4)


@pytest.fixture(scope="module")
def gqa_model(policy):
    """A tiny Llama with grouped-query attention (4 query heads, 2 key/value heads): SmolLM2's family."""
    from transformers import LlamaConfig, LlamaForCausalLM

    _, tokenizer = policy
    torch.manual_seed(1)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, intermediate_size=128, max_position_embeddings=512, initializer_range=0.2,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True,
    )
    return LlamaForCausalLM(config).eval(), tokenizer


@pytest.mark.parametrize("which", ["rotary_model", "gqa_model"])
def test_kv_cache_sampler_uses_the_current_cache_api(which, request, monkeypatch):
    """transformers 5.24 renamed ``past_key_values`` to ``cache`` (the old name is removed in 5.40): the
    sampler passes and reads ``cache`` and warns nothing, neither the keyword's FutureWarning nor the
    output attribute's logged deprecation; its prefill asks for the last position's logits only; and its
    log-probs still equal a full forward pass (GPT-NeoX and a grouped-query Llama)."""
    import warnings

    from transformers.utils import generic

    model, tokenizer = request.getfixturevalue(which)
    logged: list[str] = []
    # warning_once is cached per message: an instance attribute sees every call, also after an earlier one
    monkeypatch.setattr(generic.logger, "warning_once", lambda msg, *a, **k: logged.append(str(msg)))
    prefill_shapes = []
    hook = model.register_forward_hook(lambda m, a, out: prefill_shapes.append(tuple(out.logits.shape)))
    texts = make_prompt_set(4, 0.0, seed=7)["prompt"].tolist()
    prompt_ids = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    recorder = RecordingSampler()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", FutureWarning)
            warnings.simplefilter("error", DeprecationWarning)
            recorder(model, tokenizer, prompt_ids, [f"q{i}" for i in range(4)],
                     SamplingConfig(n=2, max_new_tokens=8, seed=1))
    finally:
        hook.remove()
    assert not [m for m in logged if "past_key_values" in m or "cache" in m], logged
    assert prefill_shapes[0] == (4, 1, len(tokenizer))  # logits_to_keep=1: one row per prompt
    assert len(prefill_shapes) > 2
    for key, ids in recorder.drawn.items():
        expected = forward_logps(model, recorder.prompt_ids[key[0]], ids)
        torch.testing.assert_close(recorder.logps[key], expected, atol=1e-4, rtol=0)


def test_the_deprecation_check_fails_on_the_old_api(rotary_model, monkeypatch):
    """The check above can fail: passing ``past_key_values`` raises under it."""
    import warnings

    model, tokenizer = rotary_model
    ids = torch.tensor([tokenizer("Hello there", add_special_tokens=False)["input_ids"]])
    out = model(input_ids=ids, use_cache=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        with pytest.raises(FutureWarning, match="past_key_values"):
            model(input_ids=ids[:, -1:], past_key_values=out.cache, use_cache=True)
