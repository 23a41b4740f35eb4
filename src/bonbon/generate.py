"""Sampling n responses per prompt from a causal LM.

Three things make this faster than sampling with each prompt repeated n times and decoded to the
token limit (the reference implementation's ``best_and_worst_of_n_sampler``):

* prompts are sorted by length before batching, so little padding is computed;
* each prompt is encoded once and its key/value cache repeated n times;
* a response stops at EOS (or a chat template's end-of-turn token, see :mod:`bonbon.chat`) or at the
  start of a new ``"\\n\\nHuman:"`` turn, and finished rows leave
  the batch at once, so no step is spent on them.

Randomness is per response: response ``(prompt_id, sample_idx)`` draws its Gumbel noise from its own
generator seeded by ``(seed, prompt_id, sample_idx)``. The samples do not depend on the batch size,
on the order of the prompts, on how they are split across shards, or on which other sample indices
the same job draws (``SamplingConfig.first_sample``: blocks of indices in separate jobs).

Also here, as the stages that sample call them: the backend choice (:func:`sample_with_backend`, the
transformers sampler or :mod:`bonbon.vllm_backend`) and the evaluation's sampling, log-probs and
scoring of a policy, by the reward model and the judge (:func:`sample_and_score`, :func:`judge_samples`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from bonbon.batching import collate, pad_id
from bonbon.chat import chat_sampling
from bonbon.logprobs import position_ids_from_mask, sequence_logps
from bonbon.models import load_policy, load_tokenizer
from bonbon.prompts import truncate_prompt_ids
from bonbon.reward_functions import load_scorer
from bonbon.sampling import SamplingConfig, end_token_ids, filter_logits, gumbel_sample, row_seed, stop_index
from bonbon.score import score_samples
from bonbon.tables import SAMPLE_COLUMNS

log = logging.getLogger(__name__)


def plan_batches(prompt_lengths: Sequence[int], prompt_ids: Sequence[str],
                 prompts_per_batch: int) -> list[list[int]]:
    """Indices of prompts grouped into batches of similar length (sorted by length, then id).

    The plan depends only on the prompt set, so a shard that takes whole batches of it computes
    exactly what an unsharded run computes for them.
    """
    order = sorted(range(len(prompt_ids)), key=lambda i: (prompt_lengths[i], prompt_ids[i]))
    return [order[i : i + prompts_per_batch] for i in range(0, len(order), prompts_per_batch)]


@torch.inference_mode()
def sample_prompt_batch(
    model: Any, tokenizer: Any, prompt_ids: list[list[int]], keys: list[str], cfg: SamplingConfig
) -> list[list[tuple[list[int], bool]]]:
    """Sample ``cfg.n`` responses for each prompt (given as token ids) of one batch.

    Returns, per prompt, ``n`` pairs ``(sampled token ids, finished)``; ``finished`` means the response
    ended with EOS, a ``cfg.stop_token_ids`` id or a stop string, never that the token limit was hit. The
    ids end with that EOS or stop id where the response did, and hold the stop string's tokens where it
    ended with one.
    """
    device = next(model.parameters()).device
    eos = tokenizer.eos_token_id
    stops = end_token_ids(cfg, eos)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    n_prompts, n = len(prompt_ids), cfg.n
    width = max(len(p) for p in prompt_ids)
    input_ids = torch.full((n_prompts, width), pad, dtype=torch.long)
    attention = torch.zeros((n_prompts, width), dtype=torch.long)
    for i, ids in enumerate(prompt_ids):  # left padding: every row's next token goes in the last column
        input_ids[i, width - len(ids) :] = torch.tensor(ids)
        attention[i, width - len(ids) :] = 1
    input_ids, attention = input_ids.to(device), attention.to(device)
    positions = position_ids_from_mask(attention)

    # logits_to_keep=1: the LM head projects only the last prompt position, the one row sampling reads
    # (with a 49k vocabulary, all positions of 32 prompts of 190 tokens are 1.2 GB of float32 logits)
    out = model(input_ids=input_ids, attention_mask=attention, position_ids=positions, use_cache=True,
                logits_to_keep=1)
    cache = out.cache  # transformers >= 5.24 names it `cache` (`past_key_values` is removed in 5.40)
    cache.batch_repeat_interleave(n)  # encode each prompt once, decode it n times
    logits = out.logits[:, -1, :].repeat_interleave(n, dim=0)
    attention = attention.repeat_interleave(n, dim=0)
    next_position = positions[:, -1].repeat_interleave(n, dim=0) + 1

    generators = []
    for key in keys:
        for j in range(n):
            g = torch.Generator(device=device)
            g.manual_seed(row_seed(cfg.seed, key, cfg.first_sample + j))
            generators.append(g)
    rows = list(range(n_prompts * n))  # which output row each batch row is
    tokens: list[list[int]] = [[] for _ in rows]
    finished = [False] * len(rows)
    stop_tail = max((len(s.encode()) for s in cfg.stop_strings), default=0)

    for step in range(cfg.max_new_tokens):
        next_tokens = gumbel_sample(filter_logits(logits, cfg.temperature, cfg.top_k, cfg.top_p), generators)
        keep = []
        for b, token in enumerate(next_tokens.tolist()):
            r = rows[b]
            tokens[r].append(token)  # EOS too: it is part of what was sampled (and of its probability)
            if token in stops:
                finished[r] = True
                continue
            if (stop_tail
                    and stop_index(tokenizer.decode(tokens[r][-stop_tail:]), cfg.stop_strings) is not None):
                finished[r] = True
                continue
            keep.append(b)
        if not keep or step == cfg.max_new_tokens - 1:
            break
        if len(keep) < len(rows):  # finished rows leave the batch: no more compute on them
            index = torch.tensor(keep, device=device)
            cache.batch_select_indices(index)
            next_tokens, attention, next_position = next_tokens[index], attention[index], next_position[index]
            rows = [rows[b] for b in keep]
            generators = [generators[b] for b in keep]
        attention = torch.cat([attention, attention.new_ones((len(rows), 1))], dim=1)
        out = model(
            input_ids=next_tokens[:, None], attention_mask=attention, position_ids=next_position[:, None],
            cache=cache, use_cache=True,
        )
        cache, logits = out.cache, out.logits[:, -1, :]
        next_position = next_position + 1

    return [[(tokens[i * n + j], finished[i * n + j]) for j in range(n)] for i in range(n_prompts)]


def generate_samples(model: Any, tokenizer: Any, prompts: pd.DataFrame, cfg: SamplingConfig, shard: int = 0,
                     shards: int = 1, sample_batch: Callable = sample_prompt_batch,
                     prompts_per_batch: int | None = None) -> tuple[pd.DataFrame, dict[str, int]]:
    """``cfg.n`` samples for every prompt of ``prompts`` (columns ``prompt_id``, ``prompt``).

    Prompts longer than ``cfg.max_prompt_length`` tokens are cut from the left (their end, with the
    final ``"\\n\\nAssistant:"``, stays). Shard ``shard`` of ``shards`` takes every ``shards``-th batch
    of the length-sorted plan of the whole prompt set, so shards are balanced in length and their
    union is exactly the unsharded run. ``sample_batch`` is the sampler of one batch (``model`` is its
    engine): :func:`sample_prompt_batch` (transformers, ``cfg.batch_size // cfg.n`` prompts a batch) or
    :func:`bonbon.vllm_backend.vllm_sample_batch` (with ``prompts_per_batch``). Returns the rows
    (columns ``SAMPLE_COLUMNS`` and ``response_ids``, the sampled ids that log-probs of the sample must
    be computed on) sorted by prompt id and sample index, and counts for the log.
    """
    cfg = chat_sampling(cfg, tokenizer, model)  # a chat template: stop at its end-of-turn ids, not HH turns
    stops = end_token_ids(cfg, tokenizer.eos_token_id)
    messages = prompts["messages"].tolist() if "messages" in prompts.columns else None
    texts, keys = prompts["prompt"].tolist(), prompts["prompt_id"].tolist()
    encoded = tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]  # cut below, and counted
    cut = [len(ids) > cfg.max_prompt_length for ids in encoded]
    encoded = [truncate_prompt_ids(ids, cfg.max_prompt_length) for ids in encoded]
    plan = plan_batches([len(e) for e in encoded], keys, prompts_per_batch or max(1, cfg.batch_size // cfg.n))
    if not 0 <= shard < shards:
        raise ValueError(f"shard {shard} is not in 0..{shards - 1}")
    plan = plan[shard::shards]
    records = []
    total = sum(len(batch) for batch in plan) * cfg.n
    with tqdm(total=total, desc="generate", unit="sample", mininterval=5) as bar:
        for batch in plan:
            results = sample_batch(model, tokenizer, [encoded[i] for i in batch],
                                   [keys[i] for i in batch], cfg)
            for i, samples in zip(batch, results, strict=True):
                for j, (ids, done) in enumerate(samples):
                    content = ids[:-1] if ids and ids[-1] in stops else ids
                    text = tokenizer.decode(content)
                    cut_at = stop_index(text, cfg.stop_strings)
                    text = text if cut_at is None else text[:cut_at]
                    n_tokens = (len(tokenizer(text, add_special_tokens=False)["input_ids"])
                                if cut_at is not None else len(content))
                    records.append({"prompt_id": keys[i], "prompt": texts[i],
                                    "sample_idx": cfg.first_sample + j, "response": text,
                                    "n_tokens": n_tokens, "finished": done, "prompt_cut": cut[i],
                                    "response_ids": ids,
                                    **({"messages": messages[i]} if messages is not None else {})})
            bar.update(len(batch) * cfg.n)
    # the conversation travels with chat prompts: a reward model with its own template renders it
    extra = ["messages"] if messages is not None else []
    frame = pd.DataFrame.from_records(records, columns=[*SAMPLE_COLUMNS, "response_ids", *extra])
    frame = frame.sort_values(["prompt_id", "sample_idx"], kind="stable").reset_index(drop=True)
    counts = {
        "prompts": sum(len(b) for b in plan),
        "samples": len(frame),
        "prompts_cut": sum(cut[i] for b in plan for i in b),
        "unfinished": int((~frame["finished"]).sum()) if len(frame) else 0,
        "generated_tokens": int(frame["n_tokens"].sum()) if len(frame) else 0,
    }
    return frame, counts


BACKENDS = ("transformers", "vllm")


def split_generation_config(generation: dict[str, Any]) -> tuple[dict[str, Any], str, dict[str, Any]]:
    """A workflow ``generation`` block as (SamplingConfig fields, backend name, vLLM options)."""
    fields = dict(generation)
    backend = fields.pop("backend", "transformers")
    vllm_options = fields.pop("vllm", None) or {}
    return fields, backend, vllm_options


def sample_with_backend(model_path: str, prompts: pd.DataFrame, cfg: SamplingConfig, device: str,
                        backend: str = "transformers", vllm_options: dict[str, Any] | None = None,
                        shard: int = 0, shards: int = 1) -> tuple[pd.DataFrame, dict[str, int], Any]:
    """Load ``model_path`` with ``backend`` and sample (see :func:`generate_samples`).

    Returns the samples, the counts and the transformers ``(model, tokenizer)`` left loaded for
    log-probs, or None after vLLM, whose engine is shut down here so that a transformers model fits on
    the GPU next.
    """
    if backend == "transformers":
        model, tokenizer = load_policy(model_path, device)
        frame, counts = generate_samples(model, tokenizer, prompts, cfg, shard=shard, shards=shards)
        return frame, counts, (model, tokenizer)
    if backend != "vllm":
        raise ValueError(f"config key generation.backend: {backend!r} is not one of {BACKENDS}")
    from bonbon.vllm_backend import load_vllm, release_vllm, vllm_sample_batch

    options = dict(vllm_options or {})
    prompts_per_call = options.pop("prompts_per_call", None)  # None: the transformers backend's batches
    tokenizer = load_tokenizer(model_path)  # the same ids and truncation as transformers
    llm = load_vllm(model_path, options)
    try:
        frame, counts = generate_samples(llm, tokenizer, prompts, cfg, shard=shard, shards=shards,
                                         sample_batch=vllm_sample_batch, prompts_per_batch=prompts_per_call)
    finally:
        release_vllm(llm)
    return frame, counts, None


@torch.inference_mode()
def sample_logps(model: Any, tokenizer: Any, samples: pd.DataFrame, max_prompt_length: int,
                 batch_size: int = 32, desc: str = "log-probs") -> np.ndarray:
    """log π(y|x) summed over the *sampled* token ids of each row (``response_ids``, EOS included where
    sampled), with the prompt cut from the left exactly as generation cut it."""
    device = next(model.parameters()).device
    # verbose=False: a prompt longer than the model's limit is cut on purpose, no warning needed
    prompt_ids = {p: truncate_prompt_ids(tokenizer(p, add_special_tokens=False, verbose=False)["input_ids"],
                                         max_prompt_length)
                  for p in samples["prompt"].unique()}
    sequences = []
    for prompt, response_ids in zip(samples["prompt"], samples["response_ids"], strict=True):
        ids = list(prompt_ids[prompt])
        sequences.append({"input_ids": ids + [int(t) for t in response_ids], "prompt_length": len(ids)})
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]["input_ids"]))
    out = np.full(len(sequences), np.nan)
    pad = pad_id(tokenizer)
    for start in tqdm(range(0, len(order), batch_size), desc=desc, mininterval=5):
        idx = order[start : start + batch_size]
        batch = {k: v.to(device) for k, v in collate([sequences[i] for i in idx], pad).items()}
        values = sequence_logps(model, batch["input_ids"], batch["attention_mask"], batch["response_mask"])
        out[idx] = values.float().cpu().numpy()
    return out


def judge_samples(samples: pd.DataFrame, judge_path: str, reward_path: str, device: str = "cpu",
                  batch_size: int = 32) -> tuple[pd.DataFrame, dict[str, int]]:
    """Add ``judge_reward``: each (prompt, response) scored by the judge (``models.judge``), the model that
    decides wins in evaluation. Where the judge is the reward model itself (``judge_path == reward_path``)
    it is a copy of ``reward`` and nothing is loaded. Returns the table and the judge's cut counts."""
    if judge_path == reward_path:
        return samples.assign(judge_reward=samples["reward"]), {"judge_is_reward_model": 1}
    model, tokenizer = load_scorer(judge_path, device)
    out, counts = score_samples(samples, model, tokenizer, batch_size, column="judge_reward", desc="judge")
    return out, {f"judge_{k}": v for k, v in counts.items() if k != "rows"}


def sample_and_score(policy_path: str, reference_path: str, reward_path: str, prompts: pd.DataFrame,
                     cfg: SamplingConfig, device: str, batch_size: int, is_reference: bool,
                     shard: tuple[int, int] = (0, 1), backend: str = "transformers",
                     vllm_options: dict | None = None,
                     judge_path: str | None = None) -> tuple[pd.DataFrame, dict]:
    """Sample ``cfg.n`` responses per prompt from a policy, add ``policy_logp`` and ``reference_logp``
    (summed over the sampled ids), the reward of each and the judge's (:func:`judge_samples`; None: the
    reward model judges). One model on the device at a time.
    ``shard`` = (index, count) does one shard of the prompts' batches (see ``generate_samples``).
    ``backend`` samples (see ``sample_with_backend``); log-probs and rewards are transformers' in both."""
    samples, counts, loaded = sample_with_backend(policy_path, prompts, cfg, device, backend, vllm_options,
                                                  shard=shard[0], shards=shard[1])
    # after vLLM (loaded is None) the log-probs come from the transformers model all the same
    model, tokenizer = loaded or load_policy(policy_path, device)
    del loaded  # `del model` below must free the policy
    samples["policy_logp"] = sample_logps(model, tokenizer, samples, cfg.max_prompt_length, batch_size,
                                          "policy log-probs")
    if is_reference:
        samples["reference_logp"] = samples["policy_logp"]
    else:
        del model
        model, tokenizer = load_policy(reference_path, device)
        samples["reference_logp"] = sample_logps(model, tokenizer, samples, cfg.max_prompt_length, batch_size,
                                                 "reference log-probs")
    del model
    reward_model, reward_tokenizer = load_scorer(reward_path, device)
    samples, cut = score_samples(samples, reward_model, reward_tokenizer, batch_size)
    del reward_model  # the judge scores after the reward model is freed
    samples, judged = judge_samples(samples, judge_path or reward_path, reward_path, device, batch_size)
    return samples, {**counts, **{f"score_{k}": v for k, v in cut.items()}, **judged}
