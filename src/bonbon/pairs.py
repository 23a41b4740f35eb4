"""Best/worst pair selection for best-of-n training data."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bonbon.tables import PAIR_COLUMNS


def select_pairs(rewards: pd.DataFrame, n: int) -> tuple[pd.DataFrame, dict[str, int]]:
    """The best and the worst of the first ``n`` samples (``sample_idx < n``) of every prompt.

    The same draws serve every n (the first 2 samples are among the first 4, …), as in the reference
    implementation, so the pair sets for different n are nested draws, not independent ones. Ties for
    the best (or the worst) go to the lower sample index. A prompt whose n rewards are all equal has no
    best/worst pair and is dropped (counted in ``counts["all_tied"]``). A prompt with fewer than n
    samples is an error: the pair would silently be a best-of-fewer.
    """
    if n < 2:
        raise ValueError(f"n must be at least 2, got {n}")
    first = rewards[rewards["sample_idx"] < n]
    sizes = first.groupby("prompt_id")["sample_idx"].nunique()
    short = sizes[sizes < n]
    if len(short):
        raise ValueError(
            f"{len(short)} prompts have fewer than n={n} samples (e.g. prompt_id {short.index[0]!r} has "
            f"{short.iloc[0]}); generate at least max(n_values) samples per prompt"
        )
    if first["reward"].isna().any():
        bad = first[first["reward"].isna()].iloc[0]
        raise ValueError(f"reward is NaN for prompt_id {bad['prompt_id']!r} sample {bad['sample_idx']}")
    ordered = first.sort_values(["prompt_id", "sample_idx"], kind="stable")
    grouped = ordered.groupby("prompt_id", sort=True)
    best = ordered.loc[grouped["reward"].idxmax()].set_index("prompt_id")
    worst = ordered.loc[grouped["reward"].idxmin()].set_index("prompt_id")
    tied = best["reward"].to_numpy() == worst["reward"].to_numpy()
    best, worst = best[~tied], worst[~tied]
    finished = "finished" in ordered.columns
    pairs = pd.DataFrame({
        "prompt_id": best.index.to_numpy(),
        "prompt": best["prompt"].to_numpy(),
        "chosen": best["response"].to_numpy(),
        "rejected": worst["response"].to_numpy(),
        "chosen_reward": best["reward"].to_numpy(dtype=np.float64),
        "rejected_reward": worst["reward"].to_numpy(dtype=np.float64),
        "chosen_idx": best["sample_idx"].to_numpy(dtype=np.int64),
        "rejected_idx": worst["sample_idx"].to_numpy(dtype=np.int64),
        "chosen_finished": best["finished"].to_numpy(dtype=bool) if finished else True,
        "rejected_finished": worst["finished"].to_numpy(dtype=bool) if finished else True,
        "n": np.int64(n),
    })
    counts = {"prompts": int(len(tied)), "pairs": int(len(pairs)), "all_tied": int(tied.sum())}
    return pairs[list(PAIR_COLUMNS)], counts
