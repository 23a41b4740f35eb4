"""KL(π_θ ‖ π_ref) along each alignment run's training path, measured at every saved snapshot on the
*validation* prompts (the train-split prompts `training.validation_fraction` holds out of training),
never on the evaluation prompts: the tool that chooses `evaluation.checkpoints`, so that two evaluated
points bracket best-of-n's KL (log n − (n − 1)/n) within max(0.5, that KL) nats.

Train the runs with a snapshot every step first (`training.snapshot_every: 1`), then:

    python perf/kl_paths.py results --samples 4 --max-step 40

Another world: ``--dataset`` (its runs and prompts), ``--reference`` (its reference model) and
``--max-new-tokens`` (its generation.max_new_tokens), e.g. config/smollm2-sentiment.yaml's:

    python perf/kl_paths.py results --dataset sentiment --max-new-tokens 32 \
        --reference results/models/imported/SmolLM2-135M-Instruct --samples 2 --max-step 16

``--every K`` measures only the snapshots at multiples of K, ``--final`` the final model too (its step is
the run's step count), for runs whose path is slow (BoNBoN alpha 1).

It prints, per run, the KL estimate (mean of log π_θ(y) − log π_ref(y) over samples from π_θ, with its
SE) at each snapshot, the steps where the path crosses its n's best-of-n KL, and the checkpoints to
evaluate: those two and one more measured snapshot on each side (:func:`steps_to_evaluate`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from bonbon.chat import chat_sampling
from bonbon.generate import generate_samples, sample_logps
from bonbon.metrics import kl_estimate
from bonbon.models import load_policy
from bonbon.sampling import SamplingConfig
from bonbon.theory import bon_kl
from bonbon.train import split_validation


def validation_prompts(prompts: pd.DataFrame, fraction: float) -> pd.DataFrame:
    train = prompts[prompts["split"] == "train"]
    _, held_out = split_validation([{"prompt_id": p} for p in train["prompt_id"]], fraction)
    return train[train["prompt_id"].isin({e["prompt_id"] for e in held_out})]


def first_crossing(kls: list[float], target: float) -> int | None:
    """Index i of the first consecutive pair of points with kls[i] <= target < kls[i + 1] (None: never)."""
    return next((i for i in range(len(kls) - 1) if kls[i] <= target < kls[i + 1]), None)


def steps_to_evaluate(path: list[tuple[int, float]], target: float, around: int = 1) -> list[int]:
    """The snapshot steps to evaluate for a reading at KL ``target``: the last measured point at or below
    it and the first above, plus ``around`` more measured snapshots on each side, because the evaluation
    prompts' KL at a step differs from the validation prompts' by about one SE (a two-point bracket can
    miss). ``path`` is (step, KL) from step 0 (π_ref, never returned) on; [] if it never crosses."""
    crossing = first_crossing([kl for _, kl in path], target)
    if crossing is None:
        return []
    chosen = path[max(0, crossing - around) : crossing + 2 + around]
    return [step for step, _ in chosen if step > 0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", type=Path)
    ap.add_argument("--samples", type=int, default=4, help="responses per validation prompt and snapshot")
    ap.add_argument("--max-step", type=int, default=40, help="snapshots after this step are skipped")
    ap.add_argument("--fraction", type=float, default=0.1, help="training.validation_fraction")
    ap.add_argument("--every", type=int, default=1, help="only the snapshots at multiples of this step")
    ap.add_argument("--steps", type=int, nargs="*", help="only these snapshot steps (instead of --every)")
    ap.add_argument("--final", action="store_true", help="also the final model (at the run's step count)")
    ap.add_argument("--runs", nargs="*", help="run names (default: every run under results/models)")
    ap.add_argument("--out", type=Path, help="CSV of (run, step, kl, kl_se)")
    ap.add_argument("--dataset", default="toy", help="the runs' dataset (results/prompts/<dataset>.parquet)")
    ap.add_argument("--reference", type=Path, help="the reference model (default: results/models/sft)")
    ap.add_argument("--max-new-tokens", type=int, default=64, help="generation.max_new_tokens of the world")
    args = ap.parse_args()
    torch.set_num_threads(2)
    prompts = validation_prompts(pd.read_parquet(args.results / "prompts" / f"{args.dataset}.parquet"),
                                 args.fraction)
    cfg = SamplingConfig(n=args.samples, max_new_tokens=args.max_new_tokens, seed=12345)
    reference, reference_tokenizer = load_policy(args.reference or args.results / "models" / "sft")
    rows = []
    runs = args.runs or sorted(p.name for p in (args.results / "models").iterdir()
                               if p.name.startswith(f"{args.dataset}-n") and "." not in p.name)
    for run in runs:
        n = int(run.split("-n")[1].split("-")[0])
        snapshots = [(int(p.name.split("-")[1]), p)
                     for p in sorted((args.results / "models" / run / "snapshots").glob("step-*"))]
        snapshots = [(step, p) for step, p in snapshots if step <= args.max_step and step % args.every == 0
                     and (not args.steps or step in args.steps)]
        summary = json.loads((args.results / "models" / run / "train_summary.json").read_text())
        final_step = summary["steps"]
        if args.final:
            snapshots.append((final_step, args.results / "models" / run))
        path = [(0, 0.0, 0.0)]
        for step, snapshot in snapshots:
            model, tokenizer = load_policy(snapshot)
            # a chat-template policy stops at its end-of-turn ids, as the workflow's sampling does
            samples, _ = generate_samples(model, tokenizer, prompts, chat_sampling(cfg, tokenizer, model))
            policy = sample_logps(model, tokenizer, samples, cfg.max_prompt_length)
            ref = sample_logps(reference, reference_tokenizer, samples, cfg.max_prompt_length)
            kl, se = kl_estimate(policy, ref, groups=samples["prompt_id"].to_numpy())
            path.append((step, float(kl), float(se)))
            print(f"  {run} step {step}: KL {kl:.3f} ± {se:.3f}", flush=True)
            rows.append({"run": run, "n": n, "step": step, "kl": kl, "kl_se": se})
        target = float(bon_kl(n))
        steps = [f"{s}:{k:.2f}" for s, k, _ in path]
        i = first_crossing([k for _, k, _ in path], target)
        note = "never crosses" if i is None else (
            f"crosses {target:.3f} between step {path[i][0]} ({path[i][1]:.3f}) and "
            f"{path[i + 1][0]} ({path[i + 1][1]:.3f}), width {path[i + 1][1] - path[i][1]:.3f} "
            f"(bracket {max(0.5, target):.3f})")
        print(f"{run}: {' '.join(steps)}\n  {note}", flush=True)
        if i is not None:  # (the final model, if measured, is evaluated anyway)
            evaluate = [s for s in steps_to_evaluate([(s, k) for s, k, _ in path], target) if s < final_step]
            print(f"  evaluate: checkpoints: {{steps: {evaluate}}}", flush=True)
    if args.out:
        pd.DataFrame(rows).to_csv(args.out, index=False)
    print(f"{len(prompts)} validation prompts x {args.samples} samples per snapshot; "
          f"mean SE {np.mean([r['kl_se'] for r in rows]):.3f}")


if __name__ == "__main__":
    main()
