"""Sweep of the toy world's training settings, chosen on the VALIDATION loss (held-out pairs), never
on the evaluation frontier: choosing on the test metric would fit the result.

For every loss variant (BoNBoN at several alpha, IPO at beta*, DPO at beta 0.1) and learning rate,
train on the n-pairs of a finished default run with ``validation_fraction`` of the prompts held out,
score the held-out pairs every ``eval_every`` steps, and report the lowest validation loss and the
step it was reached at. The choice: per loss variant, the learning rate with the lowest validation
loss; the run length: the step of that minimum, rounded up to the snapshot grid.

    python perf/sweep_toy.py --results results --out docs/toy-sweep.csv [--n 8] [--epochs 2]

Needs ``results/models/sft``, ``results/pairs/toy/n{n}.parquet`` and ``results/ref_logps/toy/n{n}.parquet``
(``snakemake --cores 2 --until ref_logps``).
"""

from __future__ import annotations

import argparse
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd

VARIANTS = [
    {"loss": "bonbon", "alpha": 0.005, "beta": None},
    {"loss": "bonbon", "alpha": 0.05, "beta": None},
    {"loss": "bonbon", "alpha": 0.2, "beta": None},
    {"loss": "bonbon", "alpha": 1.0, "beta": None},
    {"loss": "ipo", "beta": None},
    {"loss": "dpo", "beta": 0.1},
]
LEARNING_RATES = [1e-5, 3e-5, 1e-4, 3e-4]


def one_run(job: dict) -> dict:
    import torch

    from bonbon.train import config_from_dict, train

    torch.set_num_threads(1)
    from bonbon.theory import beta_star

    beta = job["variant"].get("beta") or beta_star(job["n"])  # auto: beta*(n), as the workflow resolves it
    cfg = config_from_dict({**job["variant"], "beta": beta, "learning_rate": job["lr"],
                            "optimizer": "rmsprop",
                            "warmup_steps": 10, "batch_size": 8, "epochs": job["epochs"], "max_length": 192,
                            "max_prompt_length": 128, "max_grad_norm": 10.0, "checkpoint_every": 10_000,
                            "snapshot_every": 0, "validation_fraction": job["validation_fraction"],
                            "eval_every": job["eval_every"], "log_every": 10_000, "seed": 0})
    with tempfile.TemporaryDirectory() as out:
        summary = train(job["model"], job["pairs"], job["ref"], out, cfg)
        metrics = pd.read_csv(Path(out) / "metrics.csv")
    val = metrics[metrics["val_loss"].notna()]
    best = val.loc[val["val_loss"].idxmin()]
    first_epoch = val[val["step"] < summary["steps_per_epoch"]].iloc[-1]
    return {
        **{k: job["variant"].get(k) for k in ("loss", "alpha", "beta")}, "beta_used": summary["beta"],
        "learning_rate": job["lr"], "steps_per_epoch": summary["steps_per_epoch"], "validation_pairs":
        summary["validation_pairs"], "best_val_loss": best["val_loss"], "best_step": int(best["step"]) + 1,
        "best_val_margin": best["val_margin"], "best_val_accuracy": best["val_reward_accuracy"],
        "val_loss_epoch1": first_epoch["val_loss"], "final_val_loss": val["val_loss"].iloc[-1],
        "final_train_loss": metrics["loss"].tail(5).mean(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument("--out", type=Path, default=Path("docs/toy-sweep.csv"))
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--validation-fraction", type=float, default=0.1)
    parser.add_argument("--eval-every", type=int, default=6)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    r = args.results
    jobs = [{"variant": v, "lr": lr, "epochs": args.epochs, "n": args.n, "model": str(r / "models" / "sft"),
             "pairs": str(r / "pairs" / "toy" / f"n{args.n}.parquet"),
             "ref": str(r / "ref_logps" / "toy" / f"n{args.n}.parquet"),
             "validation_fraction": args.validation_fraction, "eval_every": args.eval_every}
            for v in VARIANTS for lr in LEARNING_RATES]
    with ProcessPoolExecutor(args.workers) as pool:
        rows = list(pool.map(one_run, jobs))
    table = pd.DataFrame(rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out, index=False)
    pd.set_option("display.width", 200)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    key = ["loss", "alpha"]
    chosen = table.loc[table.fillna({"alpha": -1}).groupby(key, dropna=False)["best_val_loss"].idxmin()]
    print("\nchosen (lowest validation loss per loss variant):")
    print(chosen[[*key, "learning_rate", "best_step", "best_val_loss"]].to_string(index=False))


if __name__ == "__main__":
    main()
