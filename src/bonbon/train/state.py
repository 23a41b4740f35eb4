"""Where a run writes and where it stands: :class:`Run`, what the loop holds between steps.

Layout of ``out_dir`` (the final model sits at its root, so ``from_pretrained(out_dir)`` works)::

    config.json, model.safetensors, tokenizer files   final model, moved in from a temp dir
    adapter/                                           LoRA runs: the peft adapter (the model is merged)
    metrics.csv                                        one row per optimizer step
    checkpoints/step-000500/                           accelerate state + trainer_state.json
    snapshots/step-000500/                             the policy at that step, like the final model
    tracker/                                           report_to: logs of file-based trackers
    train_summary.json                                 written last: the run finished
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SUMMARY_FILE = "train_summary.json"
STEP_DIR = re.compile(r"^step-(\d+)$")  # checkpoints/ and snapshots/ entries


@dataclass
class Run:
    """What the loop holds: the prepared model and optimizer, where the run writes, where it stands."""

    accelerator: Any
    model: Any
    optimizer: Any
    out_dir: Path
    steps_per_epoch: int
    total_steps: int
    start_step: int = 0

    @property
    def main(self) -> bool:
        return self.accelerator.is_main_process

    @property
    def checkpoints(self) -> Path:
        return self.out_dir / "checkpoints"

    @property
    def snapshots(self) -> Path:
        return self.out_dir / "snapshots"

    @property
    def metrics_path(self) -> Path:
        return self.out_dir / "metrics.csv"

