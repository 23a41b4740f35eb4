"""Training: BoNBoN (and DPO / IPO / SFT) in one loop on ``accelerate``.

Read :func:`_fit` top to bottom: data order, model and optimizer, resume, then per step one policy
forward over the chosen AND rejected rows (a [2B, T] batch), the loss, backward, clip, update, log,
checkpoint. The reference model is never loaded here: its log-probs were computed once
(:mod:`bonbon.reference`) and are joined into the examples. The SFT term of BoNBoN reuses the chosen
log-prob of that same forward.

Layout of ``out_dir`` (the final model sits at its root, so ``from_pretrained(out_dir)`` works)::

    config.json, model.safetensors, tokenizer files   final model, moved in from a temp dir
    metrics.csv                                        one row per optimizer step
    checkpoints/step-000500/                           accelerate state + trainer_state.json
    train_summary.json                                 written last: the run finished
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import logging
import math
import os
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from tqdm.auto import tqdm

from bonbon.batching import collate_pairs, pad_id, read_pair_file, tokenize_pairs, tokenize_sft
from bonbon.logprobs import sequence_logps
from bonbon.losses import compute_loss
from bonbon.theory import beta_star

log = logging.getLogger(__name__)

__all__ = ["METRIC_COLUMNS", "TrainConfig", "attach_reference", "config_from_dict", "launch_command", "launch_or_train", "sft", "train"]

LOSS_NAMES = ("dpo", "ipo", "bonbon", "sft")
METRIC_COLUMNS = (
    "step",
    "epoch",
    "loss",
    "sft",
    "ipo",
    "chosen_reward",
    "rejected_reward",
    "margin",
    "reward_accuracy",
    "grad_norm",
    "lr",
    "tokens_per_s",
)
# fields a resumed run may change without changing what is computed
RESUMABLE_CHANGES = {"checkpoint_every", "keep_checkpoints", "checkpoints_after_training", "log_every", "epochs",
                     "max_steps"}
SUMMARY_FILE = "train_summary.json"


@dataclass
class TrainConfig:
    """Hyper-parameters of one run; defaults follow the paper (RMSprop, lr 5e-7, 150 warmup steps).

    beta=None means beta*(n) of the pair file's n for 'bonbon' and 'ipo' (DPO needs a beta).
    batch_size counts pairs per micro-batch and process: an optimizer step sees
    batch_size * gradient_accumulation_steps * processes pairs. max_steps, when set, overrides epochs.
    """

    loss: str = "bonbon"
    beta: float | None = None
    alpha: float = 0.005
    label_smoothing: float = 0.0
    reference_free: bool = False
    learning_rate: float = 5e-7
    optimizer: str = "rmsprop"
    weight_decay: float = 0.0
    warmup_steps: int = 150
    batch_size: int = 8
    gradient_accumulation_steps: int = 1
    max_grad_norm: float = 10.0
    epochs: int = 1
    max_steps: int | None = None
    max_length: int = 512
    max_prompt_length: int = 256
    seed: int = 0
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    # kept, a finished run can be extended (more epochs/max_steps) from its last checkpoint; deleted,
    # a 2.8B run frees two 33 GB checkpoints once its final model is written
    checkpoints_after_training: str = "keep"
    log_every: int = 10
    mixed_precision: str = "no"
    gradient_checkpointing: bool = False
    # pack each micro-batch's sequences into one row (no padding; attention per sequence; a pair's prompt
    # computed once; the LM head only where a response token is predicted): same pairs per step, values
    # equal up to float32 rounding
    padding_free: bool = False

    def __post_init__(self) -> None:
        if self.loss not in LOSS_NAMES:
            raise ValueError(f"loss must be one of {LOSS_NAMES}, got {self.loss!r}")
        if self.optimizer not in ("rmsprop", "adamw"):
            raise ValueError(f"optimizer must be 'rmsprop' or 'adamw', got {self.optimizer!r}")
        if self.checkpoints_after_training not in ("keep", "delete"):
            raise ValueError(
                f"checkpoints_after_training must be 'keep' or 'delete', got {self.checkpoints_after_training!r}"
            )
        if self.mixed_precision not in ("no", "bf16", "fp16"):
            raise ValueError(f"mixed_precision must be 'no', 'bf16' or 'fp16', got {self.mixed_precision!r}")
        for name in (
            "batch_size",
            "gradient_accumulation_steps",
            "epochs",
            "checkpoint_every",
            "keep_checkpoints",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1 or None, got {self.max_steps}")
        if self.loss == "dpo" and self.beta is None:
            raise ValueError("loss 'dpo' needs an explicit beta")


def config_from_dict(values: dict[str, Any]) -> TrainConfig:
    """A TrainConfig from a mapping (e.g. a workflow config block); unknown keys raise ValueError."""
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown training option(s) {unknown}; known: {sorted(known)}")
    return TrainConfig(**values)


# ---------------------------------------------------------------------------------------- entry points


def train(
    policy_path: str | Path,
    pairs_path: str | Path,
    ref_logps_path: str | Path | None,
    out_dir: str | Path,
    cfg: TrainConfig,
    callback: Callable[[int, dict[str, float]], None] | None = None,
) -> dict[str, Any]:
    """Train a policy (initialised from, and equal to, the reference) on a pair file.

    Reference log-probs come from ``ref_logps_path`` (see :mod:`bonbon.reference`); None is allowed
    only for reference-free DPO. Resumes from the latest checkpoint in ``out_dir``. ``callback(step,
    metrics_row)`` runs after every optimizer step. Returns the summary also written to
    ``out_dir/train_summary.json``.
    """
    from transformers import AutoTokenizer

    if cfg.loss == "sft":
        raise ValueError("train() is for preference losses; use sft() for loss 'sft'")
    tokenizer = AutoTokenizer.from_pretrained(policy_path)
    frame = read_pair_file(pairs_path)
    examples, counts = tokenize_pairs(
        frame, tokenizer, cfg.max_prompt_length, cfg.max_length, source=str(pairs_path)
    )
    if cfg.beta is None:
        ns = sorted(set(frame["n"].astype(int))) if "n" in frame.columns else []
        if len(ns) != 1:
            raise ValueError(f"{pairs_path}: beta=None needs one value of n in the pair file, found {ns}")
        cfg = replace(cfg, beta=beta_star(ns[0]))
        log.info("beta = beta*(n=%d) = %.6g", ns[0], cfg.beta)
    if ref_logps_path is not None:
        attach_reference(examples, ref_logps_path)
    elif not (cfg.loss == "dpo" and cfg.reference_free):
        raise ValueError(f"loss {cfg.loss!r} needs reference log-probs (ref_logps_path is None)")
    else:
        for e in examples:
            e["chosen_ref_logp"] = e["rejected_ref_logp"] = 0.0
    info = {"pairs_path": str(pairs_path), "ref_logps_path": str(ref_logps_path), "data": counts}
    return _fit(policy_path, tokenizer, examples, Path(out_dir), cfg, info, callback)


def sft(
    base_path: str | Path,
    texts: pd.DataFrame,
    out_dir: str | Path,
    cfg: TrainConfig,
    callback: Callable[[int, dict[str, float]], None] | None = None,
) -> dict[str, Any]:
    """Supervised fine-tuning on (prompt, response) rows: the same loop, loss = mean token NLL of
    the responses (prompt tokens not counted). Returns the run summary."""
    from transformers import AutoTokenizer

    cfg = replace(cfg, loss="sft")
    tokenizer = AutoTokenizer.from_pretrained(base_path)
    examples, counts = tokenize_sft(texts, tokenizer, cfg.max_prompt_length, cfg.max_length)
    return _fit(base_path, tokenizer, examples, Path(out_dir), cfg, {"data": counts}, callback)


def attach_reference(examples: list[dict[str, Any]], ref_logps_path: str | Path) -> None:
    """Join precomputed reference log-probs into the examples on (prompt_id, chosen_idx, rejected_idx).

    Raises ValueError naming the file when a pair has no finite reference log-prob, or when the
    response lengths differ (the file was computed with another tokenizer or max_length).
    """
    ref = pd.read_parquet(ref_logps_path)
    needed = ["prompt_id", "chosen_idx", "rejected_idx", "chosen_ref_logp", "rejected_ref_logp"]
    missing = [c for c in needed if c not in ref.columns]
    if missing:
        raise ValueError(f"{ref_logps_path}: missing column(s) {missing} (columns: {list(ref.columns)})")
    keys = zip(
        ref["prompt_id"].astype(str),
        ref["chosen_idx"].astype(int),
        ref["rejected_idx"].astype(int),
        strict=True,
    )
    row_of = {key: i for i, key in enumerate(keys)}
    cols = {c: ref[c].to_numpy() for c in ref.columns}
    for e in examples:
        key = (e["prompt_id"], e["chosen_idx"], e["rejected_idx"])
        row = row_of.get(key)
        if row is None:
            raise ValueError(f"{ref_logps_path}: no reference log-prob for pair {key}")
        for side in ("chosen", "rejected"):
            value = float(cols[f"{side}_ref_logp"][row])
            if not math.isfinite(value):
                raise ValueError(
                    f"{ref_logps_path}: reference log-prob of the {side} response of {key} is {value}"
                )
            length = cols.get(f"{side}_length")
            if length is not None and int(length[row]) != e[side]["response_length"]:
                raise ValueError(
                    f"{ref_logps_path}: {side} response of {key} has {int(length[row])} tokens there but "
                    f"{e[side]['response_length']} here: computed with another tokenizer or max_length?"
                )
            e[f"{side}_ref_logp"] = value


# ---------------------------------------------------------------------------------------- the loop


def _fit(
    model_path: str | Path,
    tokenizer: Any,
    examples: list[dict[str, Any]],
    out_dir: Path,
    cfg: TrainConfig,
    info: dict[str, Any],
    callback: Callable[[int, dict[str, float]], None] | None,
) -> dict[str, Any]:
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from transformers import AutoModelForCausalLM

    started = time.perf_counter()
    # mixed precision only on a GPU: CPU autocast would just make the tests slow and inexact
    accelerator = Accelerator(
        mixed_precision=cfg.mixed_precision if torch.cuda.is_available() else "no",
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
    )
    main = accelerator.is_main_process
    set_seed(cfg.seed)

    # data order: a seeded permutation per epoch, so step s always sees the same pairs (resume needs it)
    pairs_per_step = cfg.batch_size * cfg.gradient_accumulation_steps * accelerator.num_processes
    steps_per_epoch = len(examples) // pairs_per_step  # the remainder of an epoch is skipped
    if steps_per_epoch == 0:
        raise ValueError(
            f"{len(examples)} examples are fewer than the {pairs_per_step} one optimizer step needs"
        )
    total_steps = cfg.max_steps if cfg.max_steps is not None else cfg.epochs * steps_per_epoch
    loss_options: dict[str, float | bool] = {
        "dpo": {"label_smoothing": cfg.label_smoothing, "reference_free": cfg.reference_free},
        "bonbon": {"alpha": cfg.alpha},
    }.get(cfg.loss, {})

    # model and optimizer; the policy starts as the reference model
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    if cfg.optimizer == "rmsprop":
        optimizer = torch.optim.RMSprop(
            model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay
        )
    else:
        optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    model, optimizer = accelerator.prepare(model, optimizer)

    # resume from the latest complete checkpoint, if any
    ckpt_root = out_dir / "checkpoints"
    metrics_path = out_dir / "metrics.csv"
    if main:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / SUMMARY_FILE).unlink(missing_ok=True)  # present only once this run has finished
        for stale in ckpt_root.glob(".tmp-*"):  # a save that was killed half way
            shutil.rmtree(stale, ignore_errors=True)
    accelerator.wait_for_everyone()
    start_step = 0
    latest = _latest_checkpoint(ckpt_root)
    if latest is not None:
        state = json.loads((latest / "trainer_state.json").read_text())
        _check_resumable(state, cfg, len(examples), latest)
        accelerator.load_state(str(latest))
        start_step = state["step"]
        log.info("resuming from %s at step %d of %d", latest, start_step, total_steps)
    if main:
        _reset_metrics(metrics_path, keep_before=start_step)

    pad = pad_id(tokenizer)
    model.train()
    order, order_epoch = None, -1
    progress = tqdm(range(start_step, total_steps), desc=f"train {cfg.loss}", disable=not main, mininterval=5)
    for step in progress:
        epoch, position = divmod(step, steps_per_epoch)
        if epoch != order_epoch:
            generator = torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch)
            order, order_epoch = torch.randperm(len(examples), generator=generator).tolist(), epoch
        # linear warmup, then constant (the paper's); set by hand: a pure function of step survives resume,
        # and accelerate's prepared scheduler would step once per process
        lr = cfg.learning_rate * min(1.0, (step + 1) / (cfg.warmup_steps + 1))
        for group in optimizer.param_groups:
            group["lr"] = lr
        step_started = time.perf_counter()
        sums = torch.zeros(7, dtype=torch.float64)  # loss, sft, ipo, chosen_r, rejected_r, margin, acc
        tokens, grad_norm = 0, float("nan")

        for micro in range(cfg.gradient_accumulation_steps):
            slot = (position * cfg.gradient_accumulation_steps + micro) * accelerator.num_processes
            first = (slot + accelerator.process_index) * cfg.batch_size
            batch = collate_pairs([examples[i] for i in order[first : first + cfg.batch_size]], pad)
            n_pairs = batch["n_pairs"]
            tokens += int(batch["attention_mask"].sum())
            with accelerator.accumulate(model):
                # ONE policy forward over the chosen rows then the rejected rows
                logps = sequence_logps(
                    model,
                    batch["input_ids"].to(accelerator.device),
                    batch["attention_mask"].to(accelerator.device),
                    batch["response_mask"].to(accelerator.device),
                    padding_free=cfg.padding_free,
                )
                nan = torch.full((n_pairs,), math.nan)
                if cfg.loss == "sft":
                    n_response = batch["response_mask"].sum().to(accelerator.device)
                    loss = -logps.sum() / n_response  # mean token NLL over the micro-batch
                    stats = {"sft": -logps.detach().cpu()}
                else:
                    ref_c = batch["chosen_ref_logp"].to(accelerator.device)
                    ref_r = batch["rejected_ref_logp"].to(accelerator.device)
                    losses, stats = compute_loss(
                        cfg.loss, logps[:n_pairs], logps[n_pairs:], ref_c, ref_r, cfg.beta, **loss_options
                    )
                    loss = losses.mean()
                    stats = {k: v.cpu() for k, v in stats.items()}
                    stats.setdefault("sft", -logps[:n_pairs].detach().cpu())
                    if cfg.loss == "ipo":
                        stats["ipo"] = losses.detach().cpu()
                if not torch.isfinite(loss):
                    raise FloatingPointError(
                        f"non-finite loss {loss.item()} at step {step} (micro-batch {micro}, epoch {epoch}); "
                        f"prompt_ids of the batch: {batch['prompt_ids']}"
                    )
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    grad_norm = float(accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm))
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            chosen_r, rejected_r = stats.get("chosen_rewards", nan), stats.get("rejected_rewards", nan)
            parts = [
                loss.detach().cpu(),
                stats["sft"].mean(),
                stats.get("ipo", nan).mean(),
                chosen_r.mean(),
                rejected_r.mean(),
                stats.get("margin", nan).mean(),
                (chosen_r > rejected_r).float().mean()
                if "chosen_rewards" in stats
                else torch.tensor(math.nan),
            ]
            sums += torch.stack([p.double() for p in parts])

        # metrics: mean over micro-batches, then over processes
        means = accelerator.reduce(
            sums.to(accelerator.device) / cfg.gradient_accumulation_steps, "mean"
        ).cpu()
        tokens = int(accelerator.reduce(torch.tensor(tokens, device=accelerator.device), "sum"))
        row = dict(zip(METRIC_COLUMNS[2:9], means.tolist(), strict=True))
        row = {"step": step, "epoch": epoch, **row, "grad_norm": grad_norm, "lr": lr}
        row["tokens_per_s"] = tokens / max(time.perf_counter() - step_started, 1e-9)
        if main:
            _append_metrics(metrics_path, row)
            progress.set_postfix(loss=f"{row['loss']:.4g}", margin=f"{row['margin']:.3g}", refresh=False)
            if step % cfg.log_every == 0 or step == total_steps - 1:
                log.info("step %d/%d %s", step + 1, total_steps, _format(row))

        done = step + 1
        if done % cfg.checkpoint_every == 0 and done < total_steps:
            state = {
                "step": done,
                "epoch": done // steps_per_epoch,
                "position_in_epoch": done % steps_per_epoch,
            }
            state.update(seed=cfg.seed, examples=len(examples), config=asdict(cfg))
            _save_checkpoint(accelerator, ckpt_root, state, cfg.keep_checkpoints)
        if callback is not None:
            callback(step, row)

    # final model: written to a temp dir, then moved in; train_summary.json last marks completion
    accelerator.wait_for_everyone()
    state_dict = accelerator.get_state_dict(model)  # all processes: gathers a sharded model
    summary: dict[str, Any] = {}
    if main:
        tmp = out_dir / ".model-tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        accelerator.unwrap_model(model).save_pretrained(tmp, state_dict=state_dict)
        tokenizer.save_pretrained(tmp)
        for path in tmp.iterdir():
            os.replace(path, out_dir / path.name)
        tmp.rmdir()
        summary = _summary(cfg, metrics_path, info, start_step, total_steps, steps_per_epoch, len(examples))
        summary["seconds"] = time.perf_counter() - started
        tmp_summary = out_dir / f".{SUMMARY_FILE}.tmp"
        tmp_summary.write_text(json.dumps(_jsonable(summary), indent=2) + "\n")
        os.replace(tmp_summary, out_dir / SUMMARY_FILE)
        if cfg.checkpoints_after_training == "delete":  # after the summary: a kill before it can still resume
            shutil.rmtree(ckpt_root, ignore_errors=True)
        log.info("trained %d steps (resumed at %d), model in %s", total_steps, start_step, out_dir)
    accelerator.wait_for_everyone()
    return summary


# ---------------------------------------------------------------------------------------- helpers


_STEP_DIR = re.compile(r"^step-(\d+)$")


def _latest_checkpoint(root: Path) -> Path | None:
    # a step-* dir is complete by construction (renamed from .tmp-* after everything was written)
    found = [(int(m.group(1)), p) for p in root.glob("step-*") if (m := _STEP_DIR.match(p.name))]
    found = [(s, p) for s, p in found if (p / "trainer_state.json").is_file()]
    return max(found)[1] if found else None


def _check_resumable(state: dict[str, Any], cfg: TrainConfig, n_examples: int, where: Path) -> None:
    saved = state["config"]
    changed = sorted(k for k, v in asdict(cfg).items() if k not in RESUMABLE_CHANGES and saved.get(k, v) != v)
    if changed or state["examples"] != n_examples:
        raise ValueError(
            f"{where}: cannot resume, the run changed (options {changed}, examples {state['examples']} -> "
            f"{n_examples}); delete the output directory to start over"
        )


def _save_checkpoint(accelerator: Any, root: Path, state: dict[str, Any], keep: int) -> None:
    """Write to .tmp-step-N, then rename to step-N: a kill mid-save leaves the previous one intact."""
    name = f"step-{state['step']:06d}"
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
        old = sorted(p for p in root.glob("step-*") if _STEP_DIR.match(p.name))
        for path in old[:-keep]:
            shutil.rmtree(path, ignore_errors=True)
        log.info("checkpoint %s", final)
    accelerator.wait_for_everyone()


def _reset_metrics(path: Path, keep_before: int) -> None:
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


def _append_metrics(path: Path, row: dict[str, float]) -> None:
    with path.open("a", newline="") as f:
        csv.DictWriter(f, fieldnames=METRIC_COLUMNS).writerow(row)


def _format(row: dict[str, float]) -> str:
    return " ".join(f"{k}={v:.4g}" for k, v in row.items() if k not in ("step", "epoch") and math.isfinite(v))


def _summary(
    cfg: TrainConfig,
    metrics_path: Path,
    info: dict[str, Any],
    start_step: int,
    total_steps: int,
    steps_per_epoch: int,
    n_examples: int,
) -> dict[str, Any]:
    metrics = pd.read_csv(metrics_path)
    tail = max(1, min(10, len(metrics) // 2))  # first and last steps do not overlap
    summary = {
        "loss": cfg.loss,
        "beta": cfg.beta,
        "target_margin": 1.0 / (2.0 * cfg.beta) if cfg.beta and cfg.loss in ("ipo", "bonbon") else None,
        "steps": total_steps,
        "resumed_from_step": start_step,
        "steps_per_epoch": steps_per_epoch,
        "examples": n_examples,
        "first_steps": metrics.head(tail).drop(columns=["step", "epoch"]).mean().to_dict(),
        "last_steps": metrics.tail(tail).drop(columns=["step", "epoch"]).mean().to_dict(),
        "config": asdict(cfg),
    }
    summary.update(info)
    return summary


def _jsonable(value: Any) -> Any:
    # strict JSON has no NaN
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


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
    cmd += ["-m", "bonbon.train", "--policy", str(policy_path), "--pairs", str(pairs_path), "--out", str(out_dir),
            "--config", str(options_path)]
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
    cmd = launch_command(gpus, accelerate_config, policy_path, pairs_path, ref_logps_path, out_dir, handle.name)
    log.info("launching: %s", " ".join(cmd))
    try:
        with open(log_path, "a") if log_path else open(os.devnull, "w") as sink:  # noqa: SIM115
            subprocess.run(cmd, check=True, stdout=sink, stderr=subprocess.STDOUT)
    finally:
        os.unlink(handle.name)


def main(argv: list[str] | None = None) -> None:
    """CLI, also under ``accelerate launch -m bonbon.train``: options come from a YAML/JSON file."""
    import yaml

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policy", required=True, help="model directory (also the reference)")
    parser.add_argument("--pairs", required=True, help="pair file (parquet)")
    parser.add_argument("--ref-logps", help="reference log-prob file from bonbon.reference")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--config", help="YAML/JSON mapping of TrainConfig fields")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    values = yaml.safe_load(Path(args.config).read_text()) if args.config else {}
    train(args.policy, args.pairs, args.ref_logps, args.out, config_from_dict(values or {}))


if __name__ == "__main__":
    main()
