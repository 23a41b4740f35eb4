"""sequence_logps: padding invariance, agreement with a hand-made sum, and the KL estimator checked
against exact enumeration of every response of a tiny GPT-NeoX."""

from __future__ import annotations

import itertools

import pytest
import torch
from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

import bonbon.logprobs as logprobs_module
from bonbon.logprobs import (
    PACKED_ATTENTION,
    padding_free_gap,
    padding_free_problem,
    position_ids_from_mask,
    sequence_logps,
    token_logps,
)
from bonbon.metrics import kl_estimate

PAD = 0


def tiny_neox(seed: int, vocab: int = 5, init: float = 0.02, attn: str = "eager", layers: int = 1):
    torch.manual_seed(seed)
    cfg = GPTNeoXConfig(
        vocab_size=vocab,
        hidden_size=16,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=32,
        initializer_range=init,
        attn_implementation=attn,
    )
    return GPTNeoXForCausalLM(cfg).eval()


# ---------------------------------------------------------------------------------------- padding


def hand_logp(model, ids: list[int], n_prompt: int) -> float:
    """sum_{t >= n_prompt} log_softmax(logits[t-1])[ids[t]] on the unpadded sequence, one gather at a time."""
    x = torch.tensor([ids])
    with torch.no_grad():
        logits = model(input_ids=x).logits[0].double()
    total = 0.0
    for t in range(n_prompt, len(ids)):
        total += torch.log_softmax(logits[t - 1], dim=-1)[ids[t]].item()
    return total


def pad_batch(rows: list[tuple[list[int], int, str, int]]):
    """rows: (ids, n_prompt, side, n_pad) with side in left/right/middle; returns the three masks."""
    built = []
    for ids, n_prompt, side, n_pad in rows:
        prompt, resp = ids[:n_prompt], ids[n_prompt:]
        pads = [PAD] * n_pad
        seg = {
            "left": [(pads, 0, 0), (prompt, 1, 0), (resp, 1, 1)],
            "right": [(prompt, 1, 0), (resp, 1, 1), (pads, 0, 0)],
            "middle": [(prompt, 1, 0), (pads, 0, 0), (resp, 1, 1)],
        }[side]
        tok = [t for s, _, _ in seg for t in s]
        att = [a for s, a, _ in seg for _ in s]
        rsp = [r for s, _, r in seg for _ in s]
        built.append((tok, att, rsp))
    width = max(len(t) for t, _, _ in built)
    # pad every row on the right to a common width (rows already padded keep their own padding)
    ids = torch.tensor([t + [PAD] * (width - len(t)) for t, _, _ in built])
    att = torch.tensor([a + [0] * (width - len(a)) for _, a, _ in built])
    rsp = torch.tensor([r + [0] * (width - len(r)) for _, _, r in built])
    return ids, att, rsp


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_padding_invariance_and_hand_sum(attn):
    model = tiny_neox(3, vocab=11, init=0.2, attn=attn, layers=2)
    seq, n_prompt = [4, 7, 1, 9, 3, 3, 8], 3
    other = [5, 2, 6, 10, 1, 2, 3, 4, 9, 7, 6]  # a longer row so the batch really is padded
    ids, att, rsp = pad_batch(
        [
            (seq, n_prompt, "left", 0),
            (seq, n_prompt, "left", 4),
            (seq, n_prompt, "right", 4),
            (seq, n_prompt, "middle", 3),
            (other, 4, "left", 0),
        ]
    )
    with torch.no_grad():
        got = sequence_logps(model, ids, att, rsp)
    expected = hand_logp(model, seq, n_prompt)
    assert got.dtype == torch.float32
    assert got.shape == (5,)
    for i in range(4):
        assert got[i].item() == pytest.approx(expected, abs=1e-5), (i, got.tolist(), expected)
    assert got[4].item() == pytest.approx(hand_logp(model, other, 4), abs=1e-5)
    # a different response gets a different value (the test is not vacuous)
    assert abs(hand_logp(model, seq[:-1] + [2], n_prompt) - expected) > 1e-3


def test_token_logps_aligned_and_zero_outside_response():
    model = tiny_neox(4, vocab=11, init=0.2)
    ids, att, rsp = pad_batch([([4, 7, 1, 9, 3], 2, "left", 2)])
    with torch.no_grad():
        tok = token_logps(model, ids, att, rsp)
    assert tok.shape == ids.shape
    counted = (rsp.bool() & att.bool())[0]
    assert (tok[0][~counted] == 0).all()
    assert (tok[0][counted] < 0).all()
    # the last token's value is its own log-prob given the full prefix
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([[4, 7, 1, 9, 3]])).logits[0]
    assert tok[0, -1].item() == pytest.approx(torch.log_softmax(logits[3], -1)[3].item(), abs=1e-5)


def test_position_ids_from_mask():
    att = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 1, 1, 0]])
    assert position_ids_from_mask(att).tolist() == [[0, 0, 0, 1, 2], [0, 1, 2, 2, 2], [0, 0, 1, 2, 2]]


def test_response_without_context_raises():
    model = tiny_neox(0)
    ids = torch.tensor([[0, 1, 2, 3]])
    att = torch.tensor([[0, 1, 1, 1]])
    rsp = torch.tensor([[0, 1, 1, 1]])  # first real token marked as response: nothing predicts it
    with pytest.raises(ValueError, match="no real token before it"):
        sequence_logps(model, ids, att, rsp)
    with pytest.raises(ValueError, match="same shape"):
        sequence_logps(model, ids, att, rsp[:, 1:])


def test_gradients_flow():
    model = tiny_neox(1, vocab=11, init=0.2)
    model.train()
    ids, att, rsp = pad_batch([([4, 7, 1, 9, 3], 2, "left", 2), ([4, 7, 1], 2, "right", 4)])
    sequence_logps(model, ids, att, rsp).sum().backward()
    grad = model.get_output_embeddings().weight.grad
    assert grad is not None and grad.abs().sum() > 0


# ------------------------------------------------- response positions only, and the padding-free path


def full_vocabulary_token_logps(model, input_ids, attention_mask, response_mask):
    """The previous implementation: logsumexp over the vocabulary at EVERY position of [B, T, V]."""
    attn = attention_mask.bool()
    counted = response_mask.bool() & attn
    batch, seq_len = input_ids.shape
    positions = torch.arange(seq_len).expand(batch, seq_len)
    last_real = torch.where(attn, positions, torch.full_like(positions, -1)).cummax(dim=-1).values
    prev = torch.cat([torch.full_like(last_real[:, :1], -1), last_real[:, :-1]], dim=-1)
    logits = model(input_ids=input_ids, attention_mask=attention_mask.long(),
                   position_ids=position_ids_from_mask(attention_mask), use_cache=False).logits
    src, rows = prev.clamp(min=0), torch.arange(batch).unsqueeze(-1)
    picked = logits[rows, src, input_ids].float()
    lse = torch.logsumexp(logits.float(), dim=-1)[rows, src]
    return torch.where(counted, picked - lse, torch.zeros_like(picked))


def mixed_batch():
    """Rows of different lengths and every padding layout (left, right, in between)."""
    return pad_batch(
        [
            ([4, 7, 1, 9, 3, 3, 8], 3, "left", 0),
            ([4, 7, 1, 9, 3, 3, 8], 3, "left", 4),
            ([5, 2, 6, 10, 1, 2, 3, 4, 9], 4, "right", 2),
            ([4, 7, 1, 9, 3], 2, "middle", 3),
            ([6, 6, 2, 1, 8, 8, 2, 5, 1, 3, 7], 5, "right", 0),
        ]
    )


def grads_of(model, fn, weights):
    model.zero_grad(set_to_none=True)
    out = fn()
    (out * weights).sum().backward()
    return out.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_response_positions_only_is_bit_identical_to_full_vocabulary(attn, monkeypatch):
    model = tiny_neox(5, vocab=37, init=0.3, attn=attn, layers=2).train()
    ids, att, rsp = mixed_batch()
    weights = torch.linspace(-1.0, 2.0, len(ids)).unsqueeze(-1)
    old, old_grads = grads_of(model, lambda: full_vocabulary_token_logps(model, ids, att, rsp), weights)
    monkeypatch.setattr(logprobs_module, "LSE_CHUNK_ROWS", 3)  # several chunks
    new, new_grads = grads_of(model, lambda: token_logps(model, ids, att, rsp), weights)
    assert torch.equal(new, old)
    assert torch.equal(new.sum(-1), old.sum(-1))
    for name, grad in old_grads.items():
        assert torch.equal(new_grads[name], grad), name


def test_padding_free_equals_padded_to_float32_rounding():
    padded_model = tiny_neox(6, vocab=37, init=0.3, attn="sdpa", layers=2).train()
    packed_model = tiny_neox(6, vocab=37, init=0.3, attn="sdpa", layers=2).train()
    ids, att, rsp = mixed_batch()
    weights = torch.linspace(-1.0, 2.0, len(ids))
    padded, padded_grads = grads_of(padded_model, lambda: sequence_logps(padded_model, ids, att, rsp),
                                    weights)
    packed, packed_grads = grads_of(
        packed_model, lambda: sequence_logps(packed_model, ids, att, rsp, padding_free=True), weights
    )
    assert packed_model.config._attn_implementation == PACKED_ATTENTION  # the packed path really ran
    torch.testing.assert_close(packed, padded, rtol=0, atol=1e-5)
    for name, grad in padded_grads.items():
        torch.testing.assert_close(packed_grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)
    # and each row equals the unpadded sequence computed alone
    for i, (seq, n_prompt) in enumerate([([4, 7, 1, 9, 3, 3, 8], 3), ([5, 2, 6, 10, 1, 2, 3, 4, 9], 4)]):
        row = 0 if i == 0 else 2
        assert packed[row].item() == pytest.approx(hand_logp(packed_model, seq, n_prompt), abs=1e-5)


def test_padding_free_computes_a_pairs_prompt_once():
    """Rows i and i + B/2 with the same prompt (chosen, rejected) share one packed copy of it; a pair
    whose prompts differ does not; the values are those of the padded batch either way."""
    prompt, other = [4, 7, 1, 9], [4, 7, 2, 9]
    ids, att, rsp = pad_batch(
        [
            (prompt + [3, 3, 8, 5], 4, "left", 2),  # pair 0, chosen
            (prompt + [6, 2], 4, "right", 0),  # pair 1, chosen
            (prompt + [10, 1, 1], 4, "right", 3),  # pair 0, rejected: same prompt
            (other + [6, 5, 5], 4, "middle", 2),  # pair 1, rejected: another prompt
        ]
    )
    padded_model = tiny_neox(10, vocab=37, init=0.3, attn="sdpa", layers=2).train()
    packed_model = tiny_neox(10, vocab=37, init=0.3, attn="sdpa", layers=2).train()
    seen = []
    packed_model.register_forward_pre_hook(lambda m, a, k: seen.append(k["input_ids"].shape),
                                           with_kwargs=True)
    weights = torch.tensor([1.0, -0.5, 2.0, 0.25])
    padded, padded_grads = grads_of(padded_model, lambda: sequence_logps(padded_model, ids, att, rsp),
                                    weights)
    packed, packed_grads = grads_of(
        packed_model, lambda: sequence_logps(packed_model, ids, att, rsp, padding_free=True), weights
    )
    assert seen == [torch.Size([1, 8 + 6 + 3 + 7])]  # pair 0's prompt once, pair 1's twice
    torch.testing.assert_close(packed, padded, rtol=0, atol=1e-5)
    for name, grad in padded_grads.items():
        torch.testing.assert_close(packed_grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)
    # the chosen response does not see the rejected one it shares a prompt with, nor the reverse
    changed_rejected, changed_chosen = ids.clone(), ids.clone()
    changed_rejected[2, 4:7] = torch.tensor([20, 21, 22])
    changed_chosen[0, 6:10] = torch.tensor([20, 21, 22, 23])  # after 2 left pads
    with torch.no_grad():
        before = sequence_logps(packed_model, ids, att, rsp, padding_free=True)
        after_r = sequence_logps(packed_model, changed_rejected, att, rsp, padding_free=True)
        after_c = sequence_logps(packed_model, changed_chosen, att, rsp, padding_free=True)
    assert abs(after_r[2] - before[2]) > 1e-3 and abs(after_c[0] - before[0]) > 1e-3
    torch.testing.assert_close(after_r[[0, 1, 3]], before[[0, 1, 3]], rtol=0, atol=1e-6)
    torch.testing.assert_close(after_c[1:], before[1:], rtol=0, atol=1e-6)


def tiny_llama_gqa(seed: int, vocab: int = 37):
    """A tiny Llama-architecture model with grouped-query attention: 4 query heads, 2 key/value heads (the
    layout of Llama, Qwen, SmolLM2), rotary positions."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, head_dim=8, max_position_embeddings=32,
                      initializer_range=0.3, attn_implementation="sdpa", tie_word_embeddings=False)
    return LlamaForCausalLM(cfg).train()


def test_padding_free_on_a_grouped_query_model_equals_padded():
    """Padded and padding-free log-probs AND gradients agree on a GQA model (fewer KV heads than heads), with
    every padding layout and a pair's shared prompt; each row also equals its sequence computed alone.
    Pins the packed path's head layout for GQA (KV heads repeated as repeat instead of repeat_interleave:
    query head h must read KV head h // (H / H_kv)), which no GPT-NeoX test can see."""
    padded_model, packed_model = tiny_llama_gqa(3), tiny_llama_gqa(3)
    assert packed_model.config.num_key_value_heads < packed_model.config.num_attention_heads
    prompt = [4, 7, 1, 9]
    ids, att, rsp = pad_batch(
        [
            ([5, 2, 6, 10, 1, 2, 3, 4, 9], 4, "left", 2),
            (prompt + [3, 3, 8, 5], 4, "right", 0),
            ([4, 7, 1, 9, 3], 2, "middle", 3),
            (prompt + [10, 1, 1], 4, "right", 3),  # the second row's rejected: one packed copy of the prompt
        ]
    )
    weights = torch.tensor([1.0, -0.5, 2.0, 0.75])
    padded, padded_grads = grads_of(padded_model, lambda: sequence_logps(padded_model, ids, att, rsp),
                                    weights)
    packed, packed_grads = grads_of(
        packed_model, lambda: sequence_logps(packed_model, ids, att, rsp, padding_free=True), weights
    )
    assert packed_model.config._attn_implementation == PACKED_ATTENTION  # the packed path really ran
    torch.testing.assert_close(packed, padded, rtol=0, atol=1e-5)
    for name, grad in padded_grads.items():
        scale = grad.abs().max().item()  # float32 rounding of sums of terms of this size
        assert scale > 0, name
        torch.testing.assert_close(packed_grads[name], grad, rtol=1e-4, atol=1e-6 * scale, msg=name)
    for row, (seq, n_prompt) in enumerate([([5, 2, 6, 10, 1, 2, 3, 4, 9], 4), (prompt + [3, 3, 8, 5], 4),
                                            ([4, 7, 1, 9, 3], 2), (prompt + [10, 1, 1], 4)]):
        assert packed[row].item() == pytest.approx(hand_logp(packed_model, seq, n_prompt), abs=1e-5)


def test_padding_free_with_gradient_checkpointing():
    """The packed row's layout reaches the attention also when a layer is recomputed in backward."""
    plain = tiny_neox(9, vocab=37, init=0.3, attn="sdpa", layers=2).train()
    checkpointed = tiny_neox(9, vocab=37, init=0.3, attn="sdpa", layers=2).train()
    getattr(checkpointed, "activation_checkpointing_enable", checkpointed.gradient_checkpointing_enable)()
    ids, att, rsp = mixed_batch()
    weights = torch.linspace(-1.0, 2.0, len(ids))
    a, a_grads = grads_of(plain, lambda: sequence_logps(plain, ids, att, rsp, padding_free=True), weights)
    b, b_grads = grads_of(
        checkpointed, lambda: sequence_logps(checkpointed, ids, att, rsp, padding_free=True), weights
    )
    torch.testing.assert_close(b, a, rtol=0, atol=1e-6)
    for name, grad in a_grads.items():
        torch.testing.assert_close(b_grads[name], grad, rtol=1e-5, atol=1e-7, msg=name)


def test_padding_free_keeps_sequences_apart():
    """Changing one sequence of the packed row leaves the others' values unchanged (no attention across)."""
    model = tiny_neox(7, vocab=37, init=0.3, attn="sdpa", layers=2)
    ids, att, rsp = mixed_batch()
    changed = ids.clone()
    changed[0, :4] = torch.tensor([11, 12, 13, 14])  # the prompt of the first row only
    with torch.no_grad():
        before = sequence_logps(model, ids, att, rsp, padding_free=True)
        after = sequence_logps(model, changed, att, rsp, padding_free=True)
    assert abs(after[0] - before[0]) > 1e-3
    torch.testing.assert_close(after[1:], before[1:], rtol=0, atol=1e-6)


def test_padding_free_leaves_the_model_as_it_was(tmp_path):
    model = tiny_neox(8, vocab=37, init=0.3, attn="sdpa", layers=2)
    twin = tiny_neox(8, vocab=37, init=0.3, attn="sdpa", layers=2)
    ids, att, rsp = mixed_batch()
    with torch.no_grad():
        sequence_logps(model, ids, att, rsp, padding_free=True)
        # padded calls afterwards are the plain sdpa ones, bit for bit
        assert torch.equal(sequence_logps(model, ids, att, rsp), sequence_logps(twin, ids, att, rsp))
        full = model(input_ids=ids, attention_mask=att).logits
        assert torch.equal(full, twin(input_ids=ids, attention_mask=att).logits)
    model.save_pretrained(tmp_path)
    assert "bonbon" not in (tmp_path / "config.json").read_text()


def test_padding_free_needs_sdpa_and_checks_context():
    ids, att, rsp = mixed_batch()
    with pytest.raises(ValueError, match="implementation is 'eager', not 'sdpa'.*padding_free: false"):
        sequence_logps(tiny_neox(0, vocab=37, attn="eager"), ids, att, rsp, padding_free=True)
    rsp_bad = rsp.clone()
    rsp_bad[0, 0] = 1
    with pytest.raises(ValueError, match="no real token before it"):
        sequence_logps(tiny_neox(0, vocab=37, attn="sdpa"), ids, att, rsp_bad, padding_free=True)



class DroppingKwargs(torch.nn.Module):
    """A model whose forward does not pass attention keyword arguments on (the packed layout is lost)."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner, self.config = inner, inner.config

    def forward(self, bonbon_packed=None, **kwargs):
        return self.inner(**kwargs)


class ZeroPositions(DroppingKwargs):
    """Passes the packed layout on but not a packed row's positions: rotary embeddings see 0 everywhere."""

    def forward(self, position_ids=None, bonbon_packed=None, **kwargs):
        if bonbon_packed is not None:
            position_ids = torch.zeros_like(position_ids)
        return self.inner(position_ids=position_ids, bonbon_packed=bonbon_packed, **kwargs)


def test_padding_free_refuses_a_model_that_drops_the_packed_layout():
    """Without the layout the packed row would be one long sequence attending across its parts: an error,
    not wrong values; the support check names what a model lacks; the gap is float32 rounding on a
    supporting model and large where positions are lost."""
    ids, att, rsp = mixed_batch()
    model = tiny_neox(9, vocab=37, init=0.3, attn="sdpa", layers=2)
    assert padding_free_problem(model) is None
    assert padding_free_problem(tiny_neox(9, vocab=37, attn="eager")) == (
        "the model's attention implementation is 'eager', not 'sdpa'")
    with torch.no_grad(), pytest.raises(RuntimeError, match="no attention layer of the model received"):
        sequence_logps(DroppingKwargs(model), ids, att, rsp, padding_free=True)
    model.train()
    assert padding_free_gap(model, ids, att, rsp) < 1e-5
    assert model.training  # put back as it was
    assert padding_free_gap(ZeroPositions(model), ids, att, rsp) > 1e-2

# ------------------------------------------------------------------------------ KL vs enumeration

V, L = 5, 3
PROMPT = [1, 2]


def full_batch(responses: torch.Tensor):
    ids = torch.cat([torch.tensor(PROMPT).expand(len(responses), len(PROMPT)), responses], dim=1)
    att = torch.ones_like(ids)
    rsp = torch.zeros_like(ids)
    rsp[:, len(PROMPT) :] = 1
    return ids, att, rsp


def ancestral_sample(model, m: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """m responses of exactly L tokens, temperature 1, full softmax; also their log-probs as sampled."""
    seq = torch.tensor(PROMPT).expand(m, len(PROMPT)).clone()
    logp = torch.zeros(m, dtype=torch.float64)
    with torch.no_grad():
        for _ in range(L):
            probs = torch.softmax(model(input_ids=seq).logits[:, -1].double(), dim=-1)
            nxt = torch.multinomial(probs, 1, generator=gen)
            logp += probs.gather(1, nxt).squeeze(1).log()
            seq = torch.cat([seq, nxt], dim=1)
    return seq[:, len(PROMPT) :], logp


@pytest.fixture(scope="module")
def kl_setup():
    policy = tiny_neox(0, vocab=V, init=0.1)
    reference = tiny_neox(1, vocab=V, init=0.1)
    every = torch.tensor(list(itertools.product(range(V), repeat=L)))
    with torch.no_grad():
        lp = sequence_logps(policy, *full_batch(every)).double()
        lr = sequence_logps(reference, *full_batch(every)).double()
    exact = float((lp.exp() * (lp - lr)).sum())
    return policy, reference, lp, exact


def test_enumeration_is_a_distribution(kl_setup):
    _, _, lp, exact = kl_setup
    assert float(lp.exp().sum()) == pytest.approx(1.0, abs=1e-5)
    assert exact > 0.05  # clearly nonzero: the estimator check below has teeth


def estimate(policy, reference, m: int, seed: int):
    gen = torch.Generator().manual_seed(seed)
    responses, sampled_logp = ancestral_sample(policy, m, gen)
    batch = full_batch(responses)
    with torch.no_grad():
        lp = sequence_logps(policy, *batch)
        lr = sequence_logps(reference, *batch)
    # the shared function agrees with the sampler's own next-token softmaxes
    assert torch.allclose(lp.double(), sampled_logp, atol=1e-4)
    return kl_estimate(lp.numpy(), lr.numpy())


def test_kl_estimate_matches_exact_enumeration(kl_setup):
    policy, reference, _, exact = kl_setup
    m = 2000
    kl_m, se_m = estimate(policy, reference, m, seed=11)
    kl_4m, se_4m = estimate(policy, reference, 4 * m, seed=12)
    assert abs(kl_m - exact) < 3 * se_m, (kl_m, se_m, exact)
    assert abs(kl_4m - exact) < 3 * se_4m, (kl_4m, se_4m, exact)
    assert 0.35 <= se_4m / se_m <= 0.7, (se_m, se_4m)
    # precise enough that "within 3 se" is a real constraint (it excludes KL = 0)
    assert se_m < 0.2 * exact


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_no_grad_passes_project_only_the_predicting_positions(attn):
    """Reference and evaluation passes (no gradients) ask the model for the logits of the positions that
    predict a response token only: the LM head sees N rows, not B x T, and the values are those of the
    training path (every padding layout), which a wrong row order would not give."""
    model = tiny_neox(9, vocab=37, init=0.3, attn=attn, layers=2).eval()
    ids, att, rsp = mixed_batch()
    head_rows = []
    hook = model.get_output_embeddings().register_forward_hook(lambda m, a, out: head_rows.append(a[0].shape))
    try:
        with torch.no_grad():
            fast = token_logps(model, ids, att, rsp)
        slow = token_logps(model, ids, att, rsp).detach()  # with gradients: the full-position forward
    finally:
        hook.remove()
    counted = int((rsp.bool() & att.bool()).sum())
    assert head_rows[0][:-1] == (counted,) and head_rows[1][:-1] == tuple(ids.shape)
    assert counted < ids.numel() / 2
    torch.testing.assert_close(fast, slow, atol=1e-6, rtol=0)
    torch.testing.assert_close(fast, full_vocabulary_token_logps(model, ids, att, rsp).detach(),
                               atol=1e-6, rtol=0)
    assert (fast != 0).sum() == counted
