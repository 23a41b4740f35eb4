"""SmolLM2-135M-Instruct (or any causal LM directory): the workflow's sampler and log-prob passes
against the plain transformers way, side by side in one process, rounds alternating which runs first.

* ``sample``: :func:`bonbon.generate.generate_samples` against ``model.generate`` at equal batch (the
  same prompts, n rows per prompt, the same rows per forward), the same settings (temperature 1, no
  top-k / top-p, ``max_new_tokens``, stopping at the same end ids). The figure that counts is sampled
  tokens (up to and including the end token) per second of wall time.
* ``prefill``: the sampler's prompt pass with logits at every position (as before) and with
  ``logits_to_keep=1`` (now): time, and the size of the logits tensor.
* ``logps``: :func:`bonbon.generate.sample_logps` (the evaluation's and, through the same
  ``sequence_logps``, the reference pass's log-probs: logsumexp only on the rows that predict a
  response token) against a plain forward (``log_softmax`` over the whole [B, T, V] logits, then
  gather), on the same sequences in the same batches; both values are compared.

The model is a plain directory (a GGUF imported by hand: ``from_pretrained(folder, gguf_file=...)``,
rebuilt from its config without ``quantization_config``, ``save_pretrained``).

* ``padding_free``: training's log-probs padded and packed on the same pairs: equal values on a
  grouped-query model, and a forward + backward of each timed.

    python perf/bench_smollm2.py --model /tmp/smollm2/model --what sample prefill logps padding_free
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import pandas as pd
import torch

from bonbon.chat import chat_sampling, hh_to_messages, render_prompt
from bonbon.generate import generate_samples, sample_logps
from bonbon.models import load_policy
from bonbon.sampling import SamplingConfig, end_token_ids
from bonbon.toy import make_corpus, make_prompt_set


def chat_prompts(tokenizer, count: int, seed: int) -> pd.DataFrame:
    table = make_prompt_set(count, 0.0, seed=seed)
    table["prompt"] = [render_prompt(tokenizer, hh_to_messages(p)) for p in table["prompt"]]
    return table.assign(prompt_id=[f"p{i}" for i in range(len(table))])[["prompt_id", "prompt"]]


def hf_generate(model, tokenizer, prompts: pd.DataFrame, cfg: SamplingConfig, stops: tuple[int, ...]) -> int:
    """``model.generate`` with num_return_sequences=n on the same length-sorted batches; returns the
    tokens sampled up to and including each row's first end token."""
    tokenizer.padding_side = "left"
    texts = sorted(prompts["prompt"], key=lambda t: len(tokenizer(t)["input_ids"]))
    per_batch = max(1, cfg.batch_size // cfg.n)
    sampled = 0
    for start in range(0, len(texts), per_batch):
        enc = tokenizer(texts[start : start + per_batch], return_tensors="pt", padding=True,
                        add_special_tokens=False)
        out = model.generate(**enc, do_sample=True, temperature=1.0, top_k=0, top_p=1.0,
                             max_new_tokens=cfg.max_new_tokens, num_return_sequences=cfg.n,
                             eos_token_id=list(stops), pad_token_id=tokenizer.pad_token_id)
        new = out[:, enc["input_ids"].shape[1] :]
        ended = torch.isin(new, torch.tensor(stops))
        first = torch.where(ended.any(1), ended.int().argmax(1) + 1, torch.full((len(new),), new.shape[1]))
        sampled += int(first.sum())
    return sampled


def bench_sample(model, tokenizer, args) -> None:
    prompts = chat_prompts(tokenizer, args.prompts, args.seed)
    cfg = chat_sampling(SamplingConfig(n=args.n, max_new_tokens=args.max_new_tokens,
                                       batch_size=args.batch_size),
                        tokenizer, model)
    stops = end_token_ids(cfg, tokenizer.eos_token_id)
    print(f"sample: {len(prompts)} prompts x n {args.n}, {args.batch_size} rows per batch, max_new_tokens "
          f"{args.max_new_tokens}, end ids {stops}")
    rates: dict[str, list[float]] = {"ours": [], "generate": []}
    cpu_rates: dict[str, list[float]] = {"ours": [], "generate": []}
    for r in range(args.rounds):
        for side in (["ours", "generate"] if r % 2 == 0 else ["generate", "ours"]):
            torch.manual_seed(r)
            started, cpu = time.perf_counter(), time.process_time()
            if side == "ours":
                _, counts = generate_samples(model, tokenizer, prompts, cfg)
                # + end tokens
                tokens = counts["generated_tokens"] + (counts["samples"] - counts["unfinished"])
            else:
                tokens = hf_generate(model, tokenizer, prompts, cfg, stops)
            seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
            rates[side].append(tokens / seconds)
            cpu_rates[side].append(tokens / cpu)
            print(f"  round {r + 1} {side:8s} {tokens:6d} tokens in {seconds:6.1f} s = "
                  f"{tokens / seconds:6.1f} tokens/s, {tokens / cpu:6.1f} tokens per CPU s "
                  f"(load {os.getloadavg()[0]:.1f})", flush=True)
    per_round = [o / g for o, g in zip(rates["ours"], rates["generate"], strict=True)]
    print(f"sample: ours / generate tokens/s "
          f"{statistics.median(rates['ours']) / statistics.median(rates['generate']):.2f}x "
          f"(medians); per round {', '.join(f'{x:.2f}' for x in per_round)}; per CPU second "
          f"{statistics.median(cpu_rates['ours']) / statistics.median(cpu_rates['generate']):.2f}x")


@torch.inference_mode()
def bench_prefill(model, tokenizer, args) -> None:
    prompts = chat_prompts(tokenizer, args.batch_size, args.seed)["prompt"].tolist()
    ids = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    width = max(len(i) for i in ids)
    pad = tokenizer.pad_token_id
    input_ids = torch.tensor([[pad] * (width - len(i)) + i for i in ids])
    attention = torch.tensor([[0] * (width - len(i)) + [1] * len(i) for i in ids])
    positions = (attention.cumsum(-1) - 1).clamp_min(0)
    times: dict[int, list[float]] = {0: [], 1: []}
    sizes = {}
    for r in range(args.rounds):
        for keep in ([0, 1] if r % 2 == 0 else [1, 0]):
            started = time.perf_counter()
            out = model(input_ids=input_ids, attention_mask=attention, position_ids=positions, use_cache=True,
                        logits_to_keep=keep)
            times[keep].append(time.perf_counter() - started)
            sizes[keep] = out.logits.nelement() * out.logits.element_size()
            del out
    print(f"prefill: {len(ids)} prompts, padded width {width}, vocab {model.config.vocab_size}")
    for keep, label in ((0, "all positions"), (1, "logits_to_keep=1")):
        print(f"  {label:17s} logits {sizes[keep] / 2**20:8.1f} MiB, {statistics.median(times[keep]):.2f} s "
              f"(rounds {', '.join(f'{t:.2f}' for t in times[keep])})")
    print(f"prefill: logits_to_keep=1 saves {(sizes[0] - sizes[1]) / 2**20:.0f} MiB of logits, time "
          f"{statistics.median(times[0]) / statistics.median(times[1]):.2f}x")


@torch.inference_mode()
def plain_logps(model, tokenizer, samples: pd.DataFrame, batch_size: int) -> list[float]:
    """A plain forward: log_softmax over the whole [B, T, V] logits, gather the response tokens (right
    padding)."""
    out = []
    rows = list(zip(samples["prompt"], samples["response_ids"], strict=True))
    order = sorted(range(len(rows)),
                   key=lambda i: len(tokenizer(rows[i][0], add_special_tokens=False)["input_ids"])
                   + len(rows[i][1]))
    values = [0.0] * len(rows)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        seqs, spans = [], []
        for i in idx:
            p = tokenizer(rows[i][0], add_special_tokens=False)["input_ids"]
            seqs.append(p + [int(t) for t in rows[i][1]])
            spans.append((len(p), len(seqs[-1])))
        width = max(len(s) for s in seqs)
        ids = torch.tensor([s + [tokenizer.pad_token_id] * (width - len(s)) for s in seqs])
        mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs])
        logp = model(input_ids=ids, attention_mask=mask).logits.float().log_softmax(-1)
        for k, (a, b) in enumerate(spans):
            values[idx[k]] = logp[k, a - 1 : b - 1].gather(-1, ids[k, a:b, None]).sum().item()
        del logp
    out = values
    return out


def bench_logps(model, tokenizer, args) -> None:
    prompts = chat_prompts(tokenizer, args.prompts * args.n, args.seed)
    cfg = SamplingConfig(n=1, max_prompt_length=256)
    # responses: the toy corpus's, ended by EOS (what is scored does not change what a pass costs; no
    # sampling)
    corpus = make_corpus(len(prompts), seed=args.seed)
    eos = tokenizer.eos_token_id
    samples = prompts.assign(response_ids=[tokenizer(r.strip(), add_special_tokens=False)["input_ids"]
                                           [: args.max_new_tokens] + [eos]
                                           for r in corpus["response"]])
    tokens = sum(len(r) for r in samples["response_ids"])
    print(f"logps: {len(samples)} samples ({tokens} response tokens), batches of {args.batch_size}")
    times: dict[str, list[float]] = {"ours": [], "plain": []}
    cpus: dict[str, list[float]] = {"ours": [], "plain": []}
    got = {}
    for r in range(args.rounds):
        for side in (["ours", "plain"] if r % 2 == 0 else ["plain", "ours"]):
            started, cpu = time.perf_counter(), time.process_time()
            if side == "ours":
                got[side] = sample_logps(model, tokenizer, samples, cfg.max_prompt_length,
                                         args.batch_size).tolist()
            else:
                got[side] = plain_logps(model, tokenizer, samples, args.batch_size)
            times[side].append(time.perf_counter() - started)
            cpus[side].append(time.process_time() - cpu)
            print(f"  round {r + 1} {side:6s} {times[side][-1]:6.1f} s, {cpus[side][-1]:6.1f} CPU s "
                  f"(load {os.getloadavg()[0]:.1f})", flush=True)
    diff = max(abs(a - b) for a, b in zip(got["ours"], got["plain"], strict=True))
    per_round = [p / o for o, p in zip(times["ours"], times["plain"], strict=True)]
    print(f"logps: ours vs plain forward speed "
          f"{statistics.median(times['plain']) / statistics.median(times['ours']):.2f}x "
          f"(medians); per round {', '.join(f'{x:.2f}' for x in per_round)}; CPU time "
          f"{statistics.median(cpus['plain']) / statistics.median(cpus['ours']):.2f}x; "
          f"max |diff| {diff:.1e} nats")


def bench_padding_free(model, tokenizer, args) -> None:
    """Training's log-probs padded and ``padding_free`` on the same pairs (a grouped-query model: the
    packed attention repeats key/value heads itself): the values, and a forward + backward timed."""
    from bonbon.batching import collate_pairs, pad_id, tokenize_pairs
    from bonbon.logprobs import sequence_logps
    from bonbon.tables import PAIR_TEXT_COLUMNS, read_table

    frame = read_table(args.pairs, PAIR_TEXT_COLUMNS).head(args.pairs_per_batch)
    examples, _ = tokenize_pairs(frame, tokenizer, 128, 192)
    batch = collate_pairs(examples, pad_id(tokenizer))
    inputs = [batch[k] for k in ("input_ids", "attention_mask", "response_mask")]
    real = int(batch["attention_mask"].sum())
    print(f"padding_free: {len(examples)} pairs, {real} real tokens in a padded "
          f"[{', '.join(map(str, inputs[0].shape))}] batch; heads {model.config.num_attention_heads}, "
          f"key/value heads {model.config.num_key_value_heads}")
    model.train()
    values, times = {}, {False: [], True: []}
    for r in range(args.rounds):
        for packed in ([False, True] if r % 2 == 0 else [True, False]):
            model.zero_grad(set_to_none=True)
            started = time.perf_counter()
            logps = sequence_logps(model, *inputs, padding_free=packed)
            logps.sum().backward()
            times[packed].append(time.perf_counter() - started)
            values[packed] = logps.detach()
            print(f"  round {r + 1} {'padding_free' if packed else 'padded':12s} forward+backward "
                  f"{times[packed][-1]:6.1f} s (load {os.getloadavg()[0]:.1f})", flush=True)
    model.eval()
    diff = (values[True] - values[False]).abs().max().item()
    print(f"padding_free: log-probs max |padded - padding_free| {diff:.1e} nats "
          f"(of {values[False].abs().max():.1f}); "
          f"speed {statistics.median(times[False]) / statistics.median(times[True]):.2f}x; "
          f"real tokens/s padded {real / statistics.median(times[False]):.0f}, "
          f"padding_free {real / statistics.median(times[True]):.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="/tmp/smollm2/model")
    parser.add_argument("--what", nargs="+", default=["sample", "prefill", "logps"],
                        choices=["sample", "prefill", "logps", "padding_free"])
    parser.add_argument("--pairs", default="results/pairs/toy/n2.parquet", help="padding_free: a pair file")
    parser.add_argument("--pairs-per-batch", type=int, default=4)
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--n", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=32, help="rows per forward, both sides")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, tokenizer = load_policy(args.model)
    import transformers

    print(f"model {args.model}: {type(model).__name__}, "
          f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f}M params, vocab {model.config.vocab_size}; "
          f"torch {torch.__version__}, transformers {transformers.__version__}, "
          f"{args.threads} threads, load {os.getloadavg()[0]:.1f}")
    for what in args.what:
        {"sample": bench_sample, "prefill": bench_prefill, "logps": bench_logps,
         "padding_free": bench_padding_free}[what](model, tokenizer, args)


if __name__ == "__main__":
    main()
