"""Resume and checkpoints: accelerate state every ``checkpoint_every`` steps (kept to resume a killed
run, never mixed with a run of other settings), policy snapshots for evaluation, the policy written in
``from_pretrained`` form. Every write goes to a temp dir that is renamed once complete."""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bonbon.train.lora import save_policy
from bonbon.train.metrics import reset_metrics
from bonbon.train.options import RESUMABLE_CHANGES, TrainConfig
from bonbon.train.state import STEP_DIR, SUMMARY_FILE, Run

log = logging.getLogger(__name__)

def resume(run: Run, cfg: TrainConfig, n_examples: int) -> None:
    """Continue from the latest complete checkpoint, if any; metrics past it are dropped (redone)."""
    if run.main:
        run.out_dir.mkdir(parents=True, exist_ok=True)
        (run.out_dir / SUMMARY_FILE).unlink(missing_ok=True)  # present only once this run has finished
        for stale in [*run.checkpoints.glob(".tmp-*"), *run.snapshots.glob(".tmp-*")]:  # killed half way
            shutil.rmtree(stale, ignore_errors=True)
    run.accelerator.wait_for_everyone()
    latest = _latest_checkpoint(run.checkpoints)
    if latest is not None:
        state = json.loads((latest / "trainer_state.json").read_text())
        changed = check_resumable(state, cfg, n_examples)
        if changed:  # checkpoints of other settings: never mixed into this run
            if run.main:
                _set_aside(run.out_dir, cfg.on_config_change,
                           f"{latest} was written with other settings ({changed})")
            run.accelerator.wait_for_everyone()
            latest = None
    if latest is not None:
        run.accelerator.load_state(str(latest))
        run.start_step = state["step"]
        log.info("resuming from %s at step %d of %d", latest, run.start_step, run.total_steps)
    if run.main:
        reset_metrics(run.metrics_path, keep_before=run.start_step)


def _latest_checkpoint(root: Path) -> Path | None:
    # a step-* dir is complete by construction (renamed from .tmp-* after everything was written)
    found = [(int(m.group(1)), p) for p in root.glob("step-*") if (m := STEP_DIR.match(p.name))]
    found = [(s, p) for s, p in found if (p / "trainer_state.json").is_file()]
    return max(found)[1] if found else None


def check_resumable(state: dict[str, Any], cfg: TrainConfig, n_examples: int) -> str:
    """What keeps a checkpoint from being resumed by this run ('' if nothing): a result-affecting
    option (not in RESUMABLE_CHANGES) or the number of examples changed."""
    saved = state["config"]
    changed = sorted(k for k, v in asdict(cfg).items() if k not in RESUMABLE_CHANGES and saved.get(k, v) != v)
    parts = [f"{k}: {saved[k]!r} -> {getattr(cfg, k)!r}" for k in changed]
    if state["examples"] != n_examples:
        parts.append(f"examples: {state['examples']} -> {n_examples}")
    return ", ".join(parts)


def _set_aside(out_dir: Path, how: str, why: str) -> None:
    """Move ``out_dir`` to ``<out_dir>.stale-<time>`` (or delete it) and make it anew, empty."""
    if how == "delete":
        shutil.rmtree(out_dir)
        log.warning("%s; deleted %s (on_config_change: delete), training afresh", why, out_dir)
    else:
        stale = out_dir.with_name(f"{out_dir.name}.stale-{time.strftime('%Y%m%d-%H%M%S')}")
        for i in range(2, 1000):  # two changes within a second
            if not stale.exists():
                break
            stale = stale.with_name(f"{out_dir.name}.stale-{time.strftime('%Y%m%d-%H%M%S')}-{i}")
        os.rename(out_dir, stale)
        log.warning("%s; moved %s to %s (on_config_change: move), training afresh", why, out_dir, stale)
    out_dir.mkdir(parents=True)


def save_checkpoint(run: Run, cfg: TrainConfig, done: int, n_examples: int) -> None:
    """Write to .tmp-step-N, then rename to step-N: a kill mid-save leaves the previous one intact."""
    accelerator, root = run.accelerator, run.checkpoints
    state = {"step": done, "epoch": done // run.steps_per_epoch,
             "position_in_epoch": done % run.steps_per_epoch,
             "seed": cfg.seed, "examples": n_examples, "config": asdict(cfg)}
    name = f"step-{done:06d}"
    tmp, final = root / f".tmp-{name}", root / name
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))  # model, optimizer, RNG states; every process takes part
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (tmp / "trainer_state.json").write_text(json.dumps(state, indent=2) + "\n")
        shutil.rmtree(final, ignore_errors=True)
        os.rename(tmp, final)
        old = sorted(p for p in root.glob("step-*") if STEP_DIR.match(p.name))
        for path in old[: -cfg.keep_checkpoints]:
            shutil.rmtree(path, ignore_errors=True)
        log.info("checkpoint %s", final)
    accelerator.wait_for_everyone()


def save_snapshot(run: Run, tokenizer: Any, step: int) -> None:
    """The policy at ``step`` in from_pretrained form (``snapshots/step-N``: weights, config, tokenizer),
    which evaluation samples like a final model; written to a temp dir and renamed, so a kill leaves
    no half snapshot. Not deleted with the checkpoints (checkpoints_after_training: delete)."""
    final = run.snapshots / f"step-{step:06d}"
    tmp = final.with_name(f".tmp-{final.name}")
    write_policy(run, tokenizer, tmp)
    if run.main:
        shutil.rmtree(final, ignore_errors=True)
        os.rename(tmp, final)
    run.accelerator.wait_for_everyone()


def write_policy(run: Run, tokenizer: Any, directory: Path) -> None:
    """The policy in from_pretrained form (weights, config, tokenizer) in a fresh ``directory``, written by
    the main process; every process takes part in gathering a sharded model's weights."""
    state_dict = run.accelerator.get_state_dict(run.model)
    if run.main:
        shutil.rmtree(directory, ignore_errors=True)
        save_policy(run.accelerator.unwrap_model(run.model), state_dict, directory)
        tokenizer.save_pretrained(directory)

