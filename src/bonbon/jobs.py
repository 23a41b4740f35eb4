"""What every workflow script does first: send its log to its Snakemake log file and, for a model job,
use the cores Snakemake gave it, claim distinct GPUs and pick the torch device."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from bonbon.gpus import claim_gpus


def setup_job(snakemake: Any, model_job: bool = False) -> tuple[logging.Logger, str | None]:
    """The job's logger and, for a model job, its torch device (config key ``device`` from the rule's
    ``runtime`` param, which changes no result (``bonbon.rerun``), or its ``device`` param, else
    ``auto``); None for a table job, which never imports torch."""
    log = _log_to(snakemake.log[0] if snakemake.log else None)
    if not model_job:
        return log, None
    import torch

    torch.set_num_threads(max(1, int(snakemake.threads)))  # torch takes every core by default
    claim_gpus(int(snakemake.resources.get("gpu", 0)))  # distinct GPUs for concurrent local jobs
    runtime = snakemake.params.get("runtime") or {}
    return log, torch_device(runtime.get("device", snakemake.params.get("device", "auto")))


def _log_to(log_path: str | Path | None) -> logging.Logger:
    """Send this job's log records and its progress bars (stderr) to its Snakemake log file."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        stream = open(log_path, "w", buffering=1)  # noqa: SIM115 - lives as long as the job
        sys.stderr = stream  # tqdm writes to stderr
        handlers = [logging.StreamHandler(stream)]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        handlers=handlers, force=True)
    return logging.getLogger("bonbon")


def torch_device(setting: str) -> str:
    """``auto`` means CUDA where a GPU is visible (Snakemake or SLURM set CUDA_VISIBLE_DEVICES), else CPU."""
    import torch

    if setting == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if setting == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("config key device: 'cuda' was asked for but no GPU is visible to this job")
    return setting
