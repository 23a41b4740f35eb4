"""What a run records: ``metrics.csv`` (one row per optimizer step, truncated to the checkpoint on a
resume) and the summary of a finished run (``train_summary.json``)."""

from __future__ import annotations

import csv
import math
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd

from bonbon.tables import METRIC_COLUMNS
from bonbon.train.options import TrainConfig
from bonbon.train.state import STEP_DIR, Run


def reset_metrics(path: Path, keep_before: int) -> None:
    # rows past the checkpoint came from steps that are about to be redone
    rows = []
    if keep_before > 0 and path.exists():
        with path.open(newline="") as f:
            rows = [r for r in csv.DictReader(f) if int(r["step"]) < keep_before]
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=METRIC_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def append_metrics(path: Path, row: dict[str, float]) -> None:
    with path.open("a", newline="") as f:
        csv.DictWriter(f, fieldnames=METRIC_COLUMNS).writerow(row)


def format_row(row: dict[str, float]) -> str:
    return " ".join(f"{k}={v:.4g}" for k, v in row.items() if k not in ("step", "epoch") and math.isfinite(v))


def run_summary(cfg: TrainConfig, run: Run, info: dict[str, Any], n_examples: int) -> dict[str, Any]:
    metrics = pd.read_csv(run.metrics_path)
    tail = max(1, min(10, len(metrics) // 2))  # first and last steps do not overlap
    summary = {
        "loss": cfg.loss,
        "beta": cfg.beta,
        "target_margin": 1.0 / (2.0 * cfg.beta) if cfg.beta and cfg.loss in ("ipo", "bonbon") else None,
        "steps": run.total_steps,
        "resumed_from_step": run.start_step,
        "steps_per_epoch": run.steps_per_epoch,
        "examples": n_examples,
        "first_steps": metrics.head(tail).drop(columns=["step", "epoch"]).mean().to_dict(),
        "last_steps": metrics.tail(tail).drop(columns=["step", "epoch"]).mean().to_dict(),
        "config": asdict(cfg),
    }
    summary.update(info)
    snapshots = [int(m.group(1)) for p in run.snapshots.glob("step-*") if (m := STEP_DIR.match(p.name))]
    summary["snapshot_steps"] = sorted(s for s in snapshots if s < run.total_steps)
    return summary


def jsonable(value: Any) -> Any:
    # strict JSON has no NaN
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value

