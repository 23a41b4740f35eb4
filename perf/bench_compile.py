"""Does ``torch.compile`` pay for the training step? Forward + backward of ``sequence_logps`` (the
policy forward of a DPO / BoNBoN step) on the same batches, eager against compiled (dynamic shapes:
every step has another length), with the compile time shown apart.

    python perf/bench_compile.py --model results/models/sft --pairs results/pairs/toy/n8.parquet \\
        [--padding-free] [--batches 15] [--threads 1]

CPU time per step (process time) is printed next to wall time: on a shared machine it is the steadier
figure when every run has one thread.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="results/models/sft")
    parser.add_argument("--pairs", default="results/pairs/toy/n8.parquet")
    parser.add_argument("--padding-free", action="store_true", help="the packed path (training.padding_free)")
    parser.add_argument("--batches", type=int, default=15, help="steps of 8 pairs; the first 3 are left out")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from bonbon.batching import collate_pairs, pad_id, read_pair_file, tokenize_pairs
    from bonbon.logprobs import sequence_logps

    tokenizer = AutoTokenizer.from_pretrained(args.model)
    examples, _ = tokenize_pairs(read_pair_file(args.pairs), tokenizer, 128, 192)
    batches = [collate_pairs(examples[k * 8 : (k + 1) * 8], pad_id(tokenizer)) for k in range(args.batches)]
    eager = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32).train()
    compiled = torch.compile(copy.deepcopy(eager), dynamic=True)
    print(f"{args.model}, {torch.get_num_threads()} threads, padding_free={args.padding_free}, "
          f"torch {torch.__version__}")
    for name, model in (("eager", eager), ("compiled", compiled)):
        times = []
        for b in batches:
            cpu, wall = time.process_time(), time.perf_counter()
            logps = sequence_logps(
                model, b["input_ids"], b["attention_mask"], b["response_mask"], padding_free=args.padding_free
            )
            logps.sum().backward()
            times.append((time.process_time() - cpu, time.perf_counter() - wall))
        rest = times[3:]
        print(
            f"{name:9s} first step {times[0][0]:6.2f} s CPU / {times[0][1]:6.2f} s wall; then median "
            f"{1e3 * statistics.median(t[0] for t in rest):7.1f} ms CPU / "
            f"{1e3 * statistics.median(t[1] for t in rest):7.1f} ms wall per step",
            flush=True,
        )


if __name__ == "__main__":
    main()
