"""Sweep of the toy world's training settings, chosen on the VALIDATION loss (held-out pairs), never
on the evaluation frontier: choosing on the test metric would fit the result.

For every loss variant (BoNBoN at several alpha, IPO at beta*, DPO at beta 0.1) and learning rate,
train on the n-pairs of a finished default run with ``validation_fraction`` of the prompts held out,
score the held-out pairs every ``eval_every`` steps, and report the lowest validation loss and the
step it was reached at. The choice: per loss variant, the learning rate with the lowest validation
loss; the run length: the step of that minimum, rounded up to the snapshot grid.

    python perf/sweep_toy.py --results results --out docs/toy-sweep.csv [--n 8] [--epochs 2]

The warm-up sweep (issue 21: the n = 8 runs crossed best-of-8's KL in one step at warm-up 10) varies
``--warmups`` (and ``--seeds``) at the chosen learning rate, and compares each warm-up's final model with
the first warm-up's on the same held-out pairs: the mean paired difference of the per-pair validation
losses and its SE (the noise a warm-up must stay within):

    python perf/sweep_toy.py --variants bonbon:0.005 bonbon:0.2 bonbon:1 ipo --learning-rates 1e-4 \
        --warmups 10 15 20 30 50 --out docs/toy-warmup.csv

Needs ``results/models/sft``, ``results/pairs/toy/n{n}.parquet`` and ``results/ref_logps/toy/n{n}.parquet``
(``snakemake --cores 2 --until ref_logps``).
"""

from __future__ import annotations

import argparse
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd

VARIANTS = {
    "bonbon:0.005": {"loss": "bonbon", "alpha": 0.005, "beta": None},
    "bonbon:0.05": {"loss": "bonbon", "alpha": 0.05, "beta": None},
    "bonbon:0.2": {"loss": "bonbon", "alpha": 0.2, "beta": None},
    "bonbon:1": {"loss": "bonbon", "alpha": 1.0, "beta": None},
    "ipo": {"loss": "ipo", "beta": None},
    "dpo": {"loss": "dpo", "beta": 0.1},
}
LEARNING_RATES = [1e-5, 3e-5, 1e-4, 3e-4]


def validation_pair_losses(model_dir: str, job: dict, cfg) -> list[float]:
    """The run's objective on each held-out pair (what ``val_loss`` averages), for paired comparisons."""
    import torch

    from bonbon.batching import collate_pairs, pad_id, tokenize_pairs
    from bonbon.models import load_causal_lm, load_tokenizer
    from bonbon.tables import PAIR_TEXT_COLUMNS, read_table
    from bonbon.train.data import attach_reference, split_validation
    from bonbon.train.loop import batch_losses

    tokenizer = load_tokenizer(job["model"])
    frame = read_table(job["pairs"], PAIR_TEXT_COLUMNS, allow_empty=True)
    examples, _ = tokenize_pairs(frame, tokenizer, cfg.max_prompt_length, cfg.max_length, source=job["pairs"])
    attach_reference(examples, job["ref"])
    _, validation = split_validation(examples, cfg.validation_fraction)
    model = load_causal_lm(model_dir, dtype=torch.float32).eval()
    losses: list[float] = []
    with torch.no_grad():
        for first in range(0, len(validation), cfg.batch_size):
            batch = collate_pairs(validation[first : first + cfg.batch_size], pad_id(tokenizer))
            losses += batch_losses(model, batch, cfg, "cpu")[0].tolist()
    return losses


def one_run(job: dict) -> dict:
    import torch

    from bonbon.train import config_from_dict, train

    torch.set_num_threads(1)
    from bonbon.theory import beta_star

    beta = job["variant"].get("beta") or beta_star(job["n"])  # auto: beta*(n), as the workflow resolves it
    cfg = config_from_dict({**job["variant"], "beta": beta, "learning_rate": job["lr"],
                            "optimizer": "rmsprop",
                            "warmup_steps": job["warmup"], "batch_size": 8, "epochs": job["epochs"],
                            "max_length": 192,
                            "max_prompt_length": 128, "max_grad_norm": 10.0, "checkpoint_every": 10_000,
                            "snapshot_every": 0, "validation_fraction": job["validation_fraction"],
                            "eval_every": job["eval_every"], "log_every": 10_000, "seed": job["seed"]})
    with tempfile.TemporaryDirectory() as out:
        summary = train(job["model"], job["pairs"], job["ref"], out, cfg)
        metrics = pd.read_csv(Path(out) / "metrics.csv")
        pair_losses = validation_pair_losses(out, job, cfg)  # the final model's, on each held-out pair
    val = metrics[metrics["val_loss"].notna()]
    best = val.loc[val["val_loss"].idxmin()]
    first_epoch = val[val["step"] < summary["steps_per_epoch"]].iloc[-1]
    return {
        "n": job["n"], **{k: job["variant"].get(k) for k in ("loss", "alpha", "beta")},
        "beta_used": summary["beta"],
        "learning_rate": job["lr"], "warmup_steps": job["warmup"], "seed": job["seed"],
        "steps_per_epoch": summary["steps_per_epoch"], "validation_pairs":
        summary["validation_pairs"], "best_val_loss": best["val_loss"], "best_step": int(best["step"]) + 1,
        "best_val_margin": best["val_margin"], "best_val_accuracy": best["val_reward_accuracy"],
        "val_loss_epoch1": first_epoch["val_loss"], "final_val_loss": val["val_loss"].iloc[-1],
        "final_train_loss": metrics["loss"].tail(5).mean(),
        "mean_val_loss_epoch2": val[val["step"] >= summary["steps_per_epoch"]]["val_loss"].mean(),
        "pair_losses": pair_losses,
    }


def paired_differences(table: pd.DataFrame) -> pd.DataFrame:
    """Each final model against the first warm-up's (same variant, learning rate and seed) on the same
    held-out pairs: mean per-pair difference of the validation loss and its SE over pairs."""
    import numpy as np

    first = table["warmup_steps"].iloc[0]
    keys = list(zip(table["loss"], table["alpha"].fillna(-1), table["learning_rate"], table["seed"],
                    strict=True))
    base = {k: np.asarray(p)
            for k, p, w in zip(keys, table["pair_losses"], table["warmup_steps"], strict=True) if w == first}
    out = []
    for k, losses in zip(keys, table["pair_losses"], strict=True):
        diffs = np.asarray(losses) - base[k]
        out.append((diffs.mean(), diffs.std(ddof=1) / np.sqrt(diffs.size)))
    return pd.DataFrame(out, columns=[f"final_minus_warmup{first}", "paired_se"], index=table.index)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument("--out", type=Path, default=Path("docs/toy-sweep.csv"))
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--validation-fraction", type=float, default=0.1)
    parser.add_argument("--eval-every", type=int, default=6)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--learning-rates", nargs="+", type=float, default=LEARNING_RATES)
    parser.add_argument("--warmups", nargs="+", type=int, default=[10],
                        help="warmup_steps values; the first is the baseline of the paired comparison")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    args = parser.parse_args()
    r = args.results
    jobs = [{"variant": VARIANTS[v], "lr": lr, "warmup": w, "seed": seed, "epochs": args.epochs, "n": args.n,
             "model": str(r / "models" / "sft"),
             "pairs": str(r / "pairs" / "toy" / f"n{args.n}.parquet"),
             "ref": str(r / "ref_logps" / "toy" / f"n{args.n}.parquet"),
             "validation_fraction": args.validation_fraction, "eval_every": args.eval_every}
            for w in args.warmups for seed in args.seeds for v in args.variants for lr in args.learning_rates]
    with ProcessPoolExecutor(args.workers) as pool:
        rows = list(pool.map(one_run, jobs))
    table = pd.DataFrame(rows)
    table = pd.concat([table, paired_differences(table)], axis=1).drop(columns="pair_losses")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out, index=False)
    pd.set_option("display.width", 200)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    key = ["loss", "alpha", "seed"]
    chosen = table.loc[table.fillna({"alpha": -1}).groupby(key, dropna=False)["best_val_loss"].idxmin()]
    print("\nchosen (lowest validation loss per loss variant and seed):")
    columns = [*key, "learning_rate", "warmup_steps", "best_step", "best_val_loss"]
    print(chosen[columns].to_string(index=False))


if __name__ == "__main__":
    main()
