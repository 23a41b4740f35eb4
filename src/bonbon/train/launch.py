"""Running a run: here in this process, or under ``accelerate launch`` on several GPUs, and the
command line both use (``python -m bonbon.train``)."""

from __future__ import annotations

import argparse
import logging
import os
from dataclasses import asdict
from pathlib import Path

import torch

from bonbon.train.loop import train
from bonbon.train.options import TrainConfig, config_from_dict

log = logging.getLogger(__name__)


def launch_command(
    gpus: int,
    accelerate_config: str | Path | None,
    policy_path: str | Path,
    pairs_path: str | Path,
    ref_logps_path: str | Path | None,
    out_dir: str | Path,
    options_path: str | Path,
) -> list[str]:
    """The ``accelerate launch`` command line of a run on ``gpus`` processes: the :func:`main` CLI of
    this module, with the TrainConfig fields in the YAML file ``options_path``."""
    import sys

    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(gpus)]
    if accelerate_config:
        cmd += ["--config_file", str(accelerate_config)]
    cmd += ["-m", "bonbon.train", "--policy", str(policy_path), "--pairs", str(pairs_path), "--out",
            str(out_dir), "--config", str(options_path)]
    if ref_logps_path is not None:
        cmd += ["--ref-logps", str(ref_logps_path)]
    return cmd


def launch_or_train(
    policy_path: str | Path,
    pairs_path: str | Path,
    ref_logps_path: str | Path | None,
    out_dir: str | Path,
    cfg: TrainConfig,
    gpus: int = 0,
    accelerate_config: str | Path | None = None,
    log_path: str | Path | None = None,
) -> None:
    """Run :func:`train` here (0 or 1 GPU, or CPU), or under ``accelerate launch --num_processes gpus``
    with ``accelerate_config`` (FSDP or DDP) when a job was given more than one GPU."""
    import subprocess
    import tempfile

    import yaml

    if gpus <= 1 or not torch.cuda.is_available():
        train(policy_path, pairs_path, ref_logps_path, out_dir, cfg)
        return
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as handle:
        yaml.safe_dump(asdict(cfg), handle)
    cmd = launch_command(gpus, accelerate_config, policy_path, pairs_path, ref_logps_path, out_dir,
                         handle.name)
    log.info("launching: %s", " ".join(cmd))
    try:
        with open(log_path, "a") if log_path else open(os.devnull, "w") as sink:  # noqa: SIM115
            subprocess.run(cmd, check=True, stdout=sink, stderr=subprocess.STDOUT)
    finally:
        os.unlink(handle.name)


def main(argv: list[str] | None = None) -> None:
    """CLI, also under ``accelerate launch -m bonbon.train``: options come from a YAML/JSON file."""
    import yaml

    parser = argparse.ArgumentParser(description="Train one run (BoNBoN, DPO, IPO or SFT) on a pair file.")
    parser.add_argument("--policy", required=True, help="model directory (also the reference)")
    parser.add_argument("--pairs", required=True, help="pair file (parquet)")
    parser.add_argument("--ref-logps", help="reference log-prob file from bonbon.reference")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--config", help="YAML/JSON mapping of TrainConfig fields")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    values = yaml.safe_load(Path(args.config).read_text()) if args.config else {}
    train(args.policy, args.pairs, args.ref_logps, args.out, config_from_dict(values or {}))

