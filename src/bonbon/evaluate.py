"""Evaluation of a policy against the reference: win rate, KL, rewards and lengths.

Sample layout on the eval prompts (``k`` = samples per prompt for every policy):

* every policy, trained or the reference, has samples ``0 … k-1`` per prompt;
* the reference has more: sample ``j < k`` is the *opponent* of every policy's sample ``j``, and the
  draws ``k + j·N … k + j·N + N - 1`` (N = max n) form block ``j``, from which the best-of-n policy
  takes the best of the first n. Blocks never overlap the opponents, so a best-of-n sample and its
  opponent are independent draws, as the win-rate definition requires.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from bonbon.batching import collate, pad_id
from bonbon.generate import SamplingConfig
from bonbon.logprobs import sequence_logps
from bonbon.metrics import (
    bootstrap_ci,
    check_kl_sampling,
    kl_estimate,
    summarize_lengths,
    win_rate,
    win_scores,
)
from bonbon.prompts import truncate_prompt_ids
from bonbon.theory import bon_kl

SUMMARY_COLUMNS = (
    "policy", "dataset", "kind", "loss", "n", "beta", "alpha", "win_rate", "win_rate_se", "kl", "kl_se",
    "kl_method", "win_rate_ci_low", "win_rate_ci_high", "kl_ci_low", "kl_ci_high", "mean_reward", "mean_length", "median_length", "p90_length", "unfinished_share",
    "n_prompts", "n_samples",
)


def reference_samples_needed(k: int, n_max: int) -> int:
    """Reference samples per eval prompt: k opponents and k blocks of n_max best-of-n draws."""
    return k + k * n_max


@torch.inference_mode()
def sample_logps(model, tokenizer, samples: pd.DataFrame, max_prompt_length: int, batch_size: int = 32,
                 desc: str = "log-probs") -> np.ndarray:
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


def policy_seed(seed: int, policy: str) -> int:
    """A sampling seed per policy, so that no two policies share random numbers: the win rate compares
    a policy's sample with an *independent* reference sample."""
    import hashlib

    return int(hashlib.sha256(f"{seed}:{policy}".encode()).hexdigest()[:12], 16)


def sample_and_score(policy_path: str, reference_path: str, reward_path: str, prompts: pd.DataFrame,
                     cfg: SamplingConfig, device: str, batch_size: int, is_reference: bool,
                     shard: tuple[int, int] = (0, 1), backend: str = "transformers",
                     vllm_options: dict | None = None) -> tuple[pd.DataFrame, dict]:
    """Sample ``cfg.n`` responses per prompt from a policy, add ``policy_logp`` and ``reference_logp``
    (summed over the sampled ids) and the reward of each. One model on the device at a time.
    ``shard`` = (index, count) does one shard of the prompts' batches (see ``generate_samples``).
    ``backend`` samples (see ``sample_with_backend``); log-probs and rewards are transformers' in both."""
    from bonbon.generate import load_policy, sample_with_backend
    from bonbon.score import load_reward_model, score_samples

    samples, counts, loaded = sample_with_backend(policy_path, prompts, cfg, device, backend, vllm_options,
                                                  shard=shard[0], shards=shard[1])
    # after vLLM (loaded is None) the log-probs come from the transformers model all the same
    model, tokenizer = loaded or load_policy(policy_path, device)
    del loaded  # `del model` below must free the policy
    samples["policy_logp"] = sample_logps(model, tokenizer, samples, cfg.max_prompt_length, batch_size, "policy log-probs")
    if is_reference:
        samples["reference_logp"] = samples["policy_logp"]
    else:
        del model
        model, tokenizer = load_policy(reference_path, device)
        samples["reference_logp"] = sample_logps(model, tokenizer, samples, cfg.max_prompt_length, batch_size,
                                                 "reference log-probs")
    del model
    reward_model, reward_tokenizer = load_reward_model(reward_path, device)
    samples, cut = score_samples(samples, reward_model, reward_tokenizer, batch_size)
    return samples, {**counts, **{f"score_{k}": v for k, v in cut.items()}}


def best_of_n(reference: pd.DataFrame, n: int, k: int, n_max: int) -> pd.DataFrame:
    """The best-of-n policy's samples: for each prompt and j < k, the highest-reward draw among the first
    n of block j (reference sample indices ``k + j·n_max …``); ``sample_idx`` becomes j."""
    if not 1 <= n <= n_max:
        raise ValueError(f"n={n} outside 1..{n_max}")
    offset = reference["sample_idx"] - k
    block, position = offset // n_max, offset % n_max
    pool = reference[(offset >= 0) & (block < k) & (position < n)].assign(block=block)
    sizes = pool.groupby(["prompt_id", "block"]).size()
    if len(sizes) == 0 or (sizes != n).any():
        raise ValueError(f"reference samples do not hold {k} blocks of {n} best-of-n draws per prompt")
    best = pool.loc[pool.sort_values(["prompt_id", "block", "sample_idx"]).groupby(["prompt_id", "block"])["reward"].idxmax()]
    return best.assign(sample_idx=best["block"]).drop(columns="block").reset_index(drop=True)


def pair_with_opponents(policy: pd.DataFrame, reference: pd.DataFrame, k: int, source: str) -> pd.DataFrame:
    """Each policy sample j < k beside reference sample j of the same prompt, with its win (1, ½, 0)."""
    opponents = reference.loc[reference["sample_idx"] < k, ["prompt_id", "sample_idx", "reward"]]
    table = policy[policy["sample_idx"] < k].merge(
        opponents.rename(columns={"reward": "opponent_reward"}), on=["prompt_id", "sample_idx"], how="left"
    )
    if table.empty:
        raise ValueError(f"{source}: no samples to evaluate (zero rows)")
    if table["opponent_reward"].isna().any():
        missing = table.loc[table["opponent_reward"].isna(), "prompt_id"].iloc[0]
        raise ValueError(f"{source}: prompt {missing!r} has no reference sample to compare with")
    table["win"] = win_scores(table["reward"], table["opponent_reward"])
    return table


def summarize(table: pd.DataFrame, policy: str, kind: str, *, dataset: str, loss: str | None = None,
              n: int | None = None, beta: float | None = None, alpha: float | None = None,
              sampling: dict | None = None) -> dict:
    """One summary row: win rate and KL with prompt-clustered standard errors and 95% bootstrap
    intervals over prompts, rewards and lengths.

    KL is the Monte-Carlo estimate for sampled policies (valid only at temperature 1 without top-k or
    top-p: otherwise it is NaN and ``kl_method`` says why), the analytic log n − (n−1)/n for best-of-n,
    and 0 for the reference itself.
    """
    groups = table["prompt_id"]
    rate, rate_se = win_rate(table["reward"], table["opponent_reward"], groups=groups)
    rate_ci = bootstrap_ci(win_scores(table["reward"], table["opponent_reward"]), groups)
    if kind == "best_of_n":
        kl, kl_se, kl_ci, method = float(bon_kl(n)), math.nan, (math.nan, math.nan), "analytic"
    elif kind == "reference":
        kl, kl_se, kl_ci, method = 0.0, 0.0, (0.0, 0.0), "zero"
    else:
        problem = check_kl_sampling(**sampling) if sampling else None
        if problem:
            kl, kl_se, kl_ci, method = math.nan, math.nan, (math.nan, math.nan), f"invalid: {problem}"
        else:
            log_ratio = table["policy_logp"] - table["reference_logp"]
            kl, kl_se = kl_estimate(table["policy_logp"], table["reference_logp"], groups=groups)
            kl_ci, method = bootstrap_ci(log_ratio, groups), "monte_carlo"
    return {
        "policy": policy, "dataset": dataset, "kind": kind, "loss": loss, "n": n, "beta": beta, "alpha": alpha,
        "win_rate": rate, "win_rate_se": rate_se, "kl": kl, "kl_se": kl_se, "kl_method": method,
        "win_rate_ci_low": rate_ci[0], "win_rate_ci_high": rate_ci[1], "kl_ci_low": kl_ci[0], "kl_ci_high": kl_ci[1],
        "mean_reward": float(table["reward"].mean()),
        **summarize_lengths(table["n_tokens"], table["finished"]),
        "n_prompts": int(table["prompt_id"].nunique()), "n_samples": len(table),
    }


def summary_table(rows: Sequence[dict]) -> pd.DataFrame:
    """The rows in a fixed order: reference, best-of-n by n, trained policies by loss, n, beta."""
    frame = pd.DataFrame(list(rows))[list(SUMMARY_COLUMNS)]
    kind_order = frame["kind"].map({"reference": 0, "best_of_n": 1, "trained": 2})
    frame = frame.assign(_k=kind_order).sort_values(["dataset", "_k", "loss", "n", "beta", "alpha"], na_position="first")
    return frame.drop(columns="_k").reset_index(drop=True)
