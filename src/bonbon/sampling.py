"""What a sampler is asked and how it draws, shared by the transformers sampler (:mod:`bonbon.generate`)
and the vLLM backend (:mod:`bonbon.vllm_backend`): the settings, the per-response and per-policy seeds,
logit filtering, the Gumbel-max draw, the ids a response ends at and where a stop string ends it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from bonbon.prompts import ASSISTANT, HUMAN, stable_hash


@dataclass(frozen=True)
class SamplingConfig:
    """Sampling settings. The paper's defaults: temperature 1, no top-k (0), no top-p (1.0)."""

    n: int
    max_new_tokens: int = 64
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    max_prompt_length: int = 256
    batch_size: int = 64  # rows (prompt x sample) per forward pass
    seed: int = 0
    stop_strings: tuple[str, ...] = (HUMAN, ASSISTANT)  # a new turn of either side ends the response
    stop_token_ids: tuple[int, ...] = ()  # besides EOS: a chat template's end-of-turn ids (bonbon.chat)
    # the responses drawn are sample_idx first_sample ... first_sample + n - 1 (their seeds and rows), so a
    # block of indices drawn in its own job is the same rows as in one job that draws them all
    first_sample: int = 0


def end_token_ids(cfg: SamplingConfig, eos_token_id: int | None) -> tuple[int, ...]:
    """The ids a response ends at (kept in its sampled ids, as EOS is): EOS and ``cfg.stop_token_ids``."""
    return tuple(dict.fromkeys(i for i in (eos_token_id, *cfg.stop_token_ids) if i is not None))


def sample_blocks(n: int) -> list[tuple[int, int]]:
    """The blocks of sample indices [first, stop) that hold samples 0 … n − 1: [0, 2), [2, 4), [4, 8), …,
    doubling, the last one ending at the first power of two ≥ n.

    Each block is drawn (and scored) by its own jobs, and the blocks do not depend on n: growing n adds
    blocks and leaves the existing ones, and everything computed from them, untouched. Doubling keeps the
    number of jobs logarithmic in n and draws at most twice the samples needed (none where n is a power
    of two)."""
    if n < 1:
        raise ValueError(f"sample_blocks needs n >= 1, got {n}")
    blocks, first, stop = [], 0, 2
    while first < n:
        blocks.append((first, stop))
        first, stop = stop, 2 * stop
    return blocks


def row_seed(seed: int, prompt_id: str, sample_idx: int) -> int:
    """The seed of one response's generator: a hash of the run seed, the prompt id and the sample index."""
    return stable_hash(seed, prompt_id, sample_idx, digits=15)


def policy_seed(seed: int, policy: str) -> int:
    """A sampling seed per policy, so that no two policies share random numbers: the win rate compares
    a policy's sample with an *independent* reference sample."""
    return stable_hash(seed, policy, digits=12)


def filter_logits(logits: torch.Tensor, temperature: float, top_k: int, top_p: float) -> torch.Tensor:
    """Temperature, then top-k (0 = off), then nucleus top-p (1.0 = off); removed tokens get -inf."""
    logits = logits.float()
    if temperature != 1.0:  # x / 1.0 is x: the copy is skipped, the values are the same
        logits = logits / temperature
    if top_k > 0 and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        cumulative = sorted_logits.softmax(-1).cumsum(-1)
        # drop a token when the tokens before it already cover top_p; the first one always stays
        drop_sorted = (cumulative - sorted_logits.softmax(-1)) >= top_p
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def gumbel_sample(logits: torch.Tensor, generators: Sequence[torch.Generator]) -> torch.Tensor:
    """One token per row: argmax(logits + Gumbel noise) is a draw from softmax(logits) (the Gumbel-max
    trick); each row's noise comes from that row's own generator."""
    noise = torch.empty((len(generators), logits.shape[-1]), dtype=torch.float64, device=logits.device)
    for row, g in zip(noise, generators, strict=True):
        torch.rand(logits.shape[-1], generator=g, dtype=torch.float64, device=logits.device, out=row)
    # -log(-log(u)) + logits, in place: the same float64 values as out of place, without four
    # [rows, vocabulary] temporaries (a fifth of a sampling step's time with a 49k vocabulary)
    gumbel = noise.clamp_min_(1e-300).log_().neg_().log_().neg_()
    return torch.argmax(gumbel.add_(logits), dim=-1)


def stop_index(text: str, stop_strings: Sequence[str]) -> int | None:
    """Where the earliest stop string starts in ``text``, or None when there is none."""
    found = [i for s in stop_strings if (i := text.find(s)) >= 0]
    return min(found) if found else None
