"""Experiment trackers (``report_to``) through accelerate: tensorboard, wandb (offline by default),
mlflow (a local file store by default), trackio. A tracker that cannot start or log is dropped with a
warning; training never fails for one, and metrics.csv holds every value anyway."""

from __future__ import annotations

import logging
import math
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bonbon.train.options import TrainConfig

log = logging.getLogger(__name__)


def _tracker_names(report_to: str | list[str]) -> list[str]:
    names = [report_to] if isinstance(report_to, str) else list(report_to)
    return [name for name in names if name != "none"]


def tracker_options(cfg: TrainConfig, out_dir: Path) -> dict[str, Any]:
    """Accelerator arguments (log_with, project_dir) for ``cfg.report_to``; {} when no tracker is asked
    for, so the Accelerator is then built as before. A tracker whose package is not installed is left out
    with a warning (accelerate itself would drop it silently)."""
    names = _tracker_names(cfg.report_to)
    if not names:
        return {}
    from accelerate.tracking import get_available_trackers

    available = {str(t.value) for t in get_available_trackers()}
    missing = [n for n in names if n != "all" and n not in available]
    if missing:
        log.warning("report_to: the package of tracker(s) %s is not installed; this run logs without them "
                    "(pip install -e '.[test]' installs tensorboard, wandb and mlflow)", missing)
    names = [n for n in names if n == "all" or n in available]
    if not names:
        return {}
    # tensorboard writes under project_dir/{tracker_project}: one directory per run
    project_dir = Path(cfg.tracker_dir) / out_dir.name if cfg.tracker_dir else out_dir / "tracker"
    return {"log_with": names, "project_dir": str(project_dir)}


def _flat_config(values: dict[str, Any], prefix: str = "") -> dict[str, bool | int | float | str]:
    # trackers' hyper-parameter tables (tensorboard's hparams) take scalars and strings only
    flat: dict[str, bool | int | float | str] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(_flat_config(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value if isinstance(value, bool | int | float | str) else str(value)
    return flat


def init_trackers(accelerator: Any, cfg: TrainConfig, run_name: str) -> None:
    """Start each tracker of ``accelerator.log_with`` through ``init_trackers`` with the run's config.
    One at a time: a tracker that cannot start (no server, no login, no network) is dropped with a warning
    and the run goes on with the others; metrics.csv has every value anyway."""
    wanted = list(accelerator.log_with)
    if not wanted:
        return
    config = {"run": run_name, **_flat_config(asdict(cfg))}
    # a resumed run logs the steps past its checkpoint again; tensorboard's reader drops the earlier ones
    kwargs: dict[str, dict[str, Any]] = {"wandb": _wandb_options(accelerator, run_name),
                                         "trackio": {"name": run_name},
                                         "mlflow": _mlflow_options(accelerator, wanted, run_name)}
    started, kept = [], []
    for tracker in wanted:
        accelerator.log_with, accelerator.trackers = [tracker], []
        try:
            accelerator.init_trackers(cfg.tracker_project, config=config, init_kwargs=kwargs)
        except Exception as error:  # any failure of a tracker must not fail training
            log.warning("tracker %s could not start (%s: %s); training goes on without it", tracker,
                        type(error).__name__, error)
            continue
        started += accelerator.trackers
        kept.append(tracker)
    accelerator.log_with, accelerator.trackers = kept, started
    if started and accelerator.is_main_process:
        log.info("logging to %s in %s", [t.name for t in started], accelerator.logging_dir)


def _wandb_options(accelerator: Any, run_name: str) -> dict[str, Any]:
    """wandb.init arguments: offline (nothing leaves the machine; ``wandb sync`` uploads later) unless
    WANDB_MODE says otherwise, its files under the run's tracker directory."""
    return {"name": run_name, "mode": os.environ.get("WANDB_MODE", "offline"),
            "dir": str(accelerator.logging_dir)}


def _mlflow_options(accelerator: Any, wanted: list[str], run_name: str) -> dict[str, Any]:
    """MLflowTracker arguments. Without MLFLOW_TRACKING_URI, a local file store in the run's tracker
    directory (``mlruns/``): no server, no database. MLflow 3 keeps that store only behind
    MLFLOW_ALLOW_FILE_STORE, which is set here for this process."""
    logging_dir = Path(accelerator.logging_dir)
    names = {str(getattr(tracker, "value", tracker)) for tracker in wanted}  # LoggerType members or names
    if "mlflow" in names and not os.environ.get("MLFLOW_TRACKING_URI"):
        import mlflow

        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        (logging_dir / "mlruns").mkdir(parents=True, exist_ok=True)
        mlflow.set_tracking_uri((logging_dir / "mlruns").resolve().as_uri())
    return {"run_name": run_name, "logging_dir": str((logging_dir / "mlflow-artifacts").resolve())}


def log_trackers(accelerator: Any, row: dict[str, float]) -> None:
    """A metrics.csv row to the trackers at its step (its blank cells are left out). What
    ``accelerator.log`` does, one tracker at a time: one that fails is dropped with a warning."""
    values = {k: float(v) for k, v in row.items() if k != "step" and math.isfinite(v)}
    for tracker in list(accelerator.trackers):
        try:
            tracker.log(values, step=int(row["step"]))
        except Exception as error:  # as above: a tracker must not fail training
            log.warning("tracker %s failed to log step %d (%s: %s); dropped for the rest of the run",
                        tracker.name, row["step"], type(error).__name__, error)
            accelerator.trackers.remove(tracker)


def end_trackers(accelerator: Any) -> None:
    if not accelerator.trackers:
        return
    try:
        accelerator.end_training()  # finishes every tracker (uploads, closes event files)
    except Exception as error:  # the model is saved: a tracker that fails to finish must not undo that
        log.warning("trackers did not finish cleanly (%s: %s)", type(error).__name__, error)

