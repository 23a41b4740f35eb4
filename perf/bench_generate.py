"""Generation throughput: this workflow's generate stage against the reference implementation's batching.

The reference implementation's ``best_and_worst_of_n_sampler`` repeats each prompt of a batch n times,
pads the batch to its longest prompt and samples ``max_new_tokens`` for every row with no stop at EOS.
Both run here on the same model, prompts and settings, in one process; the figure that counts is
*useful* response tokens (up to the end of the response) per second of wall time.

    python perf/bench_generate.py --model results/toy/base_model --prompts results/prompts/toy.parquet
"""

from __future__ import annotations

import argparse
import time

import pandas as pd
import torch

from bonbon.generate import generate_samples
from bonbon.models import load_policy
from bonbon.sampling import SamplingConfig


def reference_sampler(model, tokenizer, prompts: list[str], n: int, max_new_tokens: int,
                      prompts_per_batch: int) -> int:
    """The reference batching: prompts in file order, each repeated n times, padded, no stop at EOS.
    Returns the number of useful tokens (before the first EOS) it produced."""
    tokenizer.padding_side = "left"
    useful = 0
    for start in range(0, len(prompts), prompts_per_batch):
        batch = [p for p in prompts[start : start + prompts_per_batch] for _ in range(n)]
        enc = tokenizer(batch, return_tensors="pt", padding=True)
        out = model.generate(**enc, do_sample=True, temperature=1.0, top_k=0, top_p=1.0,
                             max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id,
                             eos_token_id=tokenizer.pad_token_id)  # EOS is sampled but stops nothing
        new = out[:, enc["input_ids"].shape[1] :]
        is_eos = new == tokenizer.eos_token_id
        first_eos = torch.where(is_eos.any(1), is_eos.int().argmax(1), torch.full((len(new),), new.shape[1]))
        useful += int(first_eos.sum())
    return useful


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="results/toy/base_model")
    parser.add_argument("--prompts", default="results/prompts/toy.parquet")
    parser.add_argument("--n-prompts", type=int, default=96)
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=64,
                        help="rows per forward pass, both implementations")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    prompts = pd.read_parquet(args.prompts)
    prompts = prompts[prompts["split"] == "train"].head(args.n_prompts)
    model, tokenizer = load_policy(args.model)
    per_batch = max(1, args.batch_size // args.n)
    torch.manual_seed(0)

    started = time.perf_counter()
    reference_tokens = reference_sampler(model, tokenizer, prompts["prompt"].tolist(), args.n,
                                         args.max_new_tokens, per_batch)
    reference_seconds = time.perf_counter() - started

    cfg = SamplingConfig(n=args.n, max_new_tokens=args.max_new_tokens, batch_size=args.batch_size)
    started = time.perf_counter()
    _, counts = generate_samples(model, tokenizer, prompts, cfg)
    ours_seconds = time.perf_counter() - started

    ours_rate, reference_rate = (counts["generated_tokens"] / ours_seconds,
                                 reference_tokens / reference_seconds)
    print(f"prompts {len(prompts)} x n {args.n}, max_new_tokens {args.max_new_tokens}, "
          f"{args.batch_size} rows/batch, {args.threads} threads, model {args.model}")
    print(f"reference batching: {reference_tokens:7d} useful tokens in {reference_seconds:6.2f} s = "
          f"{reference_rate:7.0f} tokens/s")
    print(f"this workflow:      {counts['generated_tokens']:7d} useful tokens in {ours_seconds:6.2f} s = "
          f"{ours_rate:7.0f} tokens/s")
    print(f"speed-up: {ours_rate / reference_rate:.2f}x tokens/s, "
          f"{reference_seconds / ours_seconds:.2f}x wall time")


if __name__ == "__main__":
    main()
