"""Why a run's validation KL jumps between two snapshots (issue 21, "What to build" 3: the n = 8 BoNBoN and
IPO runs crossed best-of-8's 1.204 nats in one optimizer step, 9 -> 10, at warm-up 10).

Three measurements, all on the *validation* prompts with perf/kl_paths.py's draws (4 per prompt, seed
12345), so that its KL equals that script's:

1. per snapshot: the samples (length, unfinished, the toy world's filler sentences, the proxy's reward)
   and where the KL sits: the EOS token's log π_θ − log π_ref against every other token's, the
   per-token log-ratio's quantiles, and the contexts (3 tokens before, then the token) that carry most;
2. the optimizer: per step, the update between consecutive snapshots, |Δθ|, and its RMS over the
   parameters divided by that step's learning rate (RMSprop's normalised step g / sqrt(v), ~ 1 /
   sqrt(1 − 0.99^t) for steady gradients, since torch's square_avg starts at 0);
3. ``--interpolate A B``: the KL along the straight line θ_A + t (θ_B − θ_A), which says whether a
   smaller step in the same direction would have landed between the two KLs;
4. ``--probe TEXT --words W ...``: the mean log-probability of each next word after TEXT appended to every
   validation prompt, for π_ref and each snapshot (``--probe-steps``), and how often the n-pairs' chosen
   and rejected responses carry TEXT and the filler.

Needs the run trained with ``training.snapshot_every: 1``:

    python perf/kl_jump.py results toy-n8-ipo-betaauto --steps 8 9 10 11 --interpolate 9 10 \
        --probe " It depends on the situation. That is a" --words " strange" " common" " very" " lot"
"""

from __future__ import annotations

import argparse
import collections
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file

from bonbon.batching import collate, pad_id
from bonbon.generate import generate_samples
from bonbon.logprobs import token_logps
from bonbon.metrics import kl_estimate
from bonbon.models import load_policy, load_reward_model
from bonbon.prompts import truncate_prompt_ids
from bonbon.sampling import SamplingConfig
from bonbon.score import score_responses
from bonbon.toy import FILLER

sys.path.insert(0, str(Path(__file__).resolve().parent))
from kl_paths import validation_prompts  # noqa: E402


@torch.inference_mode()
def per_token(model, tokenizer, samples: pd.DataFrame, max_prompt_length: int) -> list[np.ndarray]:
    """log π(y_t | x, y_<t) of every sampled token (EOS included where sampled), one array per row."""
    out = []
    for start in range(0, len(samples), 32):
        rows = samples.iloc[start : start + 32]
        seqs = []
        for prompt, ids in zip(rows["prompt"], rows["response_ids"], strict=True):
            p = truncate_prompt_ids(tokenizer(prompt, add_special_tokens=False)["input_ids"],
                                    max_prompt_length)
            seqs.append({"input_ids": list(p) + [int(t) for t in ids], "prompt_length": len(p)})
        batch = collate(seqs, pad_id(tokenizer))
        values = token_logps(model, batch["input_ids"], batch["attention_mask"], batch["response_mask"])
        out += [values[row, s["prompt_length"] : len(s["input_ids"])].numpy().copy()
                for row, s in enumerate(seqs)]
    return out


def learning_rate(step: int, lr: float, warmup: int) -> float:
    """bonbon.train.loop.learning_rate of step index ``step`` (snapshot s is after step index s − 1)."""
    return lr * min(1.0, (step + 1) / (warmup + 1))


class Probe:
    """The validation prompts, the reference and the proxy, and the draws of perf/kl_paths.py."""

    def __init__(self, results: Path, fraction: float, samples: int):
        self.prompts = validation_prompts(pd.read_parquet(results / "prompts" / "toy.parquet"), fraction)
        self.cfg = SamplingConfig(n=samples, max_new_tokens=64, seed=12345)
        self.reference, self.tokenizer = load_policy(results / "models" / "sft")
        self.proxy, self.proxy_tokenizer = load_reward_model(results / "toy" / "reward_model")

    def draw(self, model) -> tuple[pd.DataFrame, list[np.ndarray]]:
        """Samples of ``model`` and their per-token log π_θ − log π_ref."""
        samples, _ = generate_samples(model, self.tokenizer, self.prompts, self.cfg)
        policy = per_token(model, self.tokenizer, samples, self.cfg.max_prompt_length)
        reference = per_token(self.reference, self.tokenizer, samples, self.cfg.max_prompt_length)
        return samples, [a - b for a, b in zip(policy, reference, strict=True)]

    def kl(self, samples: pd.DataFrame, ratios: list[np.ndarray]) -> tuple[float, float]:
        seq = np.array([r.sum() for r in ratios])
        return kl_estimate(seq, np.zeros_like(seq), groups=samples["prompt_id"].to_numpy())

    def describe(self, step: int, samples: pd.DataFrame, ratios: list[np.ndarray]) -> dict:
        kl, se = self.kl(samples, ratios)
        eos = self.tokenizer.eos_token_id
        ends = [len(ids) > 0 and int(ids[-1]) == eos for ids in samples["response_ids"]]
        eos_part = np.mean([r[-1] if e else 0.0 for r, e in zip(ratios, ends, strict=True)])
        tokens = np.concatenate([r[:-1] if e else r for r, e in zip(ratios, ends, strict=True)])
        filler = samples["response"].map(lambda t: sum(t.count(f) for f in FILLER))
        proxy, _ = score_responses(self.proxy, self.proxy_tokenizer, samples["prompt"].tolist(),
                                   samples["response"].tolist())
        return {"step": step, "kl": kl, "kl_se": se, "length": samples["n_tokens"].mean(),
                "unfinished": 1 - samples["finished"].mean(), "filler_per_response": filler.mean(),
                "proxy_reward": float(np.mean(proxy)), "kl_eos": eos_part, "kl_other": kl - eos_part,
                "logratio_per_token": tokens.mean(), "logratio_p99": np.quantile(tokens, 0.99),
                "share_logratio_gt_2": (tokens > 2).mean()}

    def contexts(self, samples: pd.DataFrame, ratios: list[np.ndarray], top: int) -> pd.DataFrame:
        """The (3 tokens before | token) contexts by their share of the KL (summed log-ratio / samples)."""
        total, count = collections.Counter(), collections.Counter()
        for ids, ratio in zip(samples["response_ids"], ratios, strict=True):
            ids = [int(i) for i in ids]
            for j, value in enumerate(ratio):
                key = (self.tokenizer.decode(ids[max(0, j - 3) : j]), self.tokenizer.decode(ids[j : j + 1]))
                total[key] += float(value)
                count[key] += 1
        rows = [{"before": b, "token": t, "kl_share": total[b, t] / len(samples), "occurrences": count[b, t],
                 "logratio_each": total[b, t] / count[b, t]}
                for b, t in sorted(total, key=lambda k: -total[k])[:top]]
        return pd.DataFrame(rows)


@torch.inference_mode()
def probe_words(model, tokenizer, prompts: list[str], text: str, words: list[str]) -> list[float]:
    """Mean over ``prompts`` of log π(word | prompt + text) for each (single-token) word."""
    ids = []
    for word in words:
        encoded = tokenizer(word, add_special_tokens=False)["input_ids"]
        if len(encoded) != 1:
            raise ValueError(f"{word!r} is {len(encoded)} tokens, not one")
        ids.append(encoded[0])
    values = []
    for prompt in prompts:
        x = torch.tensor([tokenizer(prompt + text, add_special_tokens=False)["input_ids"]])
        values.append(torch.log_softmax(model(input_ids=x).logits[0, -1].float(), -1)[ids].tolist())
    return np.mean(values, axis=0).tolist()


def pair_counts(results: Path, n: int, text: str) -> str:
    """How often the n-pairs' chosen and rejected responses carry ``text``, and their filler sentences."""
    pairs = pd.read_parquet(results / "pairs" / "toy" / f"n{n}.parquet")
    filler = {side: pairs[side].map(lambda t: sum(t.count(f) for f in FILLER)).mean()
              for side in ("chosen", "rejected")}
    carry = {side: pairs[side].str.contains(text, regex=False).mean() for side in ("chosen", "rejected")}
    return (f"n = {n} pairs ({len(pairs)}): {text!r} in {carry['chosen']:.3f} of the chosen, "
            f"{carry['rejected']:.3f} of the rejected; filler sentences {filler['chosen']:.2f} / "
            f"{filler['rejected']:.2f} a response")


def updates(results: Path, run_dir: Path, last: int, lr: float, warmup: int) -> pd.DataFrame:
    """|Δθ| between consecutive snapshots and its RMS per parameter over the step's learning rate."""
    rows, previous = [], None
    for step in range(last + 1):
        path = (results / "models" / "sft" if step == 0 else run_dir / "snapshots" / f"step-{step:06d}")
        weights = load_file(str(path / "model.safetensors"))
        if previous is not None:
            per = {k: float((weights[k] - previous[k]).norm()) for k in weights}
            norm = math.sqrt(sum(v * v for v in per.values()))
            size = sum(v.numel() for v in weights.values())
            rate = learning_rate(step - 1, lr, warmup)
            rows.append({"step": f"{step - 1}->{step}", "lr": rate, "update_norm": norm,
                         "rms_update_over_lr": norm / math.sqrt(size) / rate,
                         "steady_gradient_bound": 1 / math.sqrt(1 - 0.99**step),
                         "largest_tensor": max(per, key=per.get), "its_norm": max(per.values())})
        previous = weights
    return pd.DataFrame(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", type=Path)
    ap.add_argument("run", help="a run name under results/models, or a run directory")
    ap.add_argument("--steps", type=int, nargs="*", default=[8, 9, 10, 11],
                    help="snapshots measured (sections 1 and 2); none: only --probe / --interpolate")
    ap.add_argument("--interpolate", type=int, nargs=2, metavar=("A", "B"))
    ap.add_argument("--points", type=float, nargs="+", default=[0.25, 0.5, 0.75])
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--fraction", type=float, default=0.1)
    ap.add_argument("--learning-rate", type=float, default=1e-4)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--contexts", type=int, default=6, help="contexts listed per snapshot")
    ap.add_argument("--probe", help="text appended to every validation prompt (leading space included)")
    ap.add_argument("--words", nargs="+", default=[], help="single-token next words to score after --probe")
    ap.add_argument("--probe-steps", type=int, nargs="+", help="snapshots probed (default: --steps)")
    ap.add_argument("--pairs-text", help="text counted in the pairs (default: --probe's last sentence)")
    ap.add_argument("--n", type=int, default=8, help="the run's n, for the pair counts")
    args = ap.parse_args()
    torch.set_num_threads(2)
    pd.set_option("display.width", 250)
    fmt = {"float_format": lambda v: f"{v:.3f}", "index": False}
    run_dir = Path(args.run) if Path(args.run).is_dir() else args.results / "models" / args.run
    probe = Probe(args.results, args.fraction, args.samples)
    rows = []
    for step in args.steps:
        model, _ = load_policy(run_dir / "snapshots" / f"step-{step:06d}")
        samples, ratios = probe.draw(model)
        rows.append(probe.describe(step, samples, ratios))
        print(f"step {step}: KL {rows[-1]['kl']:.3f}; the contexts that carry it:", flush=True)
        print(probe.contexts(samples, ratios, args.contexts).to_string(**fmt), flush=True)
    if args.steps:
        print("\nvalidation samples per snapshot (kl_eos: the EOS token's log-ratio; kl_other: every other "
              "token's)")
        print(pd.DataFrame(rows).to_string(**fmt))
        print("\nthe optimizer's steps (snapshot s is the model after step index s - 1)")
        print(updates(args.results, run_dir, max(args.steps), args.learning_rate, args.warmup)
              .to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    if args.probe:
        prompts = probe.prompts["prompt"].tolist()
        print(f"\nmean log-probability of the next word after prompt + {args.probe!r}:")
        rows = [{"model": "reference", **dict(zip(args.words, probe_words(
            probe.reference, probe.tokenizer, prompts, args.probe, args.words), strict=True))}]
        for step in args.probe_steps or args.steps:
            model, _ = load_policy(run_dir / "snapshots" / f"step-{step:06d}")
            rows.append({"model": f"step {step}", **dict(zip(args.words, probe_words(
                model, probe.tokenizer, prompts, args.probe, args.words), strict=True))})
        print(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.2f}"))
        text = args.pairs_text or args.probe.strip().split(". ")[-1]
        print(pair_counts(args.results, args.n, text))
    if args.interpolate:
        a, b = args.interpolate
        # the loaded models' own state dicts: transformers renames keys on loading (embed_out -> lm_head)
        wa, wb = ({k: v.clone() for k, v in load_policy(run_dir / "snapshots" / f"step-{s:06d}")[0]
                   .state_dict().items()} for s in (a, b))
        model, _ = load_policy(run_dir / "snapshots" / f"step-{a:06d}")
        print(f"\nKL along theta_{a} + t (theta_{b} - theta_{a}):")
        for t in [0.0, *args.points, 1.0]:
            model.load_state_dict({k: torch.lerp(wa[k], wb[k], t) for k in wa})  # t = 1: exactly theta_B
            samples, ratios = probe.draw(model)
            kl, se = probe.kl(samples, ratios)
            print(f"  t = {t:.2f}: KL {kl:.3f} ± {se:.3f}", flush=True)


if __name__ == "__main__":
    main()
