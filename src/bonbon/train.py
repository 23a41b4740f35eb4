"""Training: BoNBoN (and DPO / IPO / SFT) in one loop on ``accelerate``.

Read :func:`_fit` top to bottom: data order, model and optimizer, resume, then per step one policy
forward over the chosen AND rejected rows (a [2B, T] batch), the loss, backward, clip, update, log,
checkpoint. The reference model is never loaded here: its log-probs were computed once
(:mod:`bonbon.reference`) and are joined into the examples. The SFT term of BoNBoN reuses the chosen
log-prob of that same forward.

Layout of ``out_dir`` (the final model sits at its root, so ``from_pretrained(out_dir)`` works)::

    config.json, model.safetensors, tokenizer files   final model, moved in from a temp dir
    adapter/                                           LoRA runs: the peft adapter (the model is merged)
    metrics.csv                                        one row per optimizer step
    checkpoints/step-000500/                           accelerate state + trainer_state.json
    snapshots/step-000500/                             the policy at that step, like the final model
    tracker/                                           report_to: logs of file-based trackers
    train_summary.json                                 written last: the run finished

LoRA (``cfg.lora``, through peft) and experiment trackers (``cfg.report_to``, through accelerate) are
helpers hooked into the loop: :func:`_wrap_lora`, :func:`_save_policy`, :func:`_tracker_options`,
:func:`_init_trackers`, :func:`_log_trackers`, :func:`_end_trackers`.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import os
import re
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from tqdm.auto import tqdm

from bonbon.batching import collate_pairs, pad_id, tokenize_pairs, tokenize_sft
from bonbon.config import schema_errors, training_defaults, training_keys
from bonbon.logprobs import sequence_logps
from bonbon.losses import LOSSES
from bonbon.models import load_causal_lm, load_tokenizer
from bonbon.prompts import stable_hash
from bonbon.tables import LOSS_METRICS, METRIC_COLUMNS, PAIR_TEXT_COLUMNS, VALIDATION_COLUMNS, read_table

log = logging.getLogger(__name__)

__all__ = ["LoraOptions", "TrainConfig", "attach_reference", "config_from_dict", "launch_command", "launch_or_train", "sft",
           "train"]

# fields a resumed run may change without changing what is computed: the training keys the schema marks
# x-runtime (they change no result) or x-resumable (where the run ends, which steps write snapshots)
RESUMABLE_CHANGES = {*training_keys("x-runtime"), *training_keys("x-resumable")}
SUMMARY_FILE = "train_summary.json"
ADAPTER_DIR = "adapter"  # a LoRA policy's peft adapter, beside its merged weights
ONE_WEIGHTS_FILE = "10TB"  # max_shard_size of a saved policy: model.safetensors, never shards


@dataclass
class LoraOptions:
    """LoRA through peft: the policy trains rank-r adapters B @ A (scaled by alpha / r) on the frozen
    reference weights of ``target_modules`` (module names; "all-linear" for every Linear but the head).
    Defaults and bounds: the schema's ``training.lora`` (see :func:`config_from_dict`)."""

    enabled: bool
    r: int
    alpha: float
    dropout: float
    target_modules: list[str] | str


@dataclass
class TrainConfig:
    """One run: its objective and the loop settings of the config's ``training`` block.

    Every loop setting's default and bound is stated once, in the schema (``definitions.training`` of
    src/bonbon/schemas/config.schema.yaml): build a TrainConfig with :func:`config_from_dict`, which
    checks a mapping against it and fills what is unset. batch_size counts pairs per micro-batch and
    process: an optimizer step sees batch_size * gradient_accumulation_steps * processes pairs.
    max_steps, when set, overrides epochs. snapshot_every None means every checkpoint_every, 0 none.
    """

    loss: str  # a name in bonbon.losses.LOSSES
    learning_rate: float
    optimizer: str
    weight_decay: float
    warmup_steps: int
    batch_size: int
    gradient_accumulation_steps: int
    max_grad_norm: float
    epochs: int
    max_steps: int | None
    max_length: int
    max_prompt_length: int
    seed: int
    checkpoint_every: int
    keep_checkpoints: int
    checkpoints_after_training: str
    # checkpoints written with other settings: moved aside to <out_dir>.stale-<time>/ or deleted, then
    # the run starts afresh (a crashed run with the same settings resumes)
    on_config_change: str
    log_every: int
    mixed_precision: str
    gradient_checkpointing: bool
    # pack each micro-batch's sequences into one row (no padding; attention per sequence; a pair's prompt
    # computed once; the LM head only where a response token is predicted): same pairs per step, values equal up to float32 rounding
    padding_free: bool
    snapshot_every: int | None
    validation_fraction: float
    eval_every: int
    lora: LoraOptions  # train LoRA adapters instead of every weight (a mapping of its fields is accepted)
    # experiment trackers through accelerate: "none", a tracker's name or "all", or a list of names
    report_to: str | list[str]
    tracker_dir: str | None  # None: {out_dir}/tracker
    tracker_project: str  # the project (wandb, trackio) or experiment (mlflow) name
    # the objective's parameters (a run of the config: bonbon.runs.expand_runs resolves beta 'auto')
    beta: float | None = None
    alpha: float | None = None
    label_smoothing: float = 0.0
    reference_free: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.lora, dict):  # from config_from_dict, YAML or asdict
            self.lora = LoraOptions(**self.lora)
        # what the schema cannot say of one run
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {sorted(LOSSES)}, got {self.loss!r}")
        if self.loss != "sft" and self.beta is None:
            raise ValueError(f"loss {self.loss!r} needs beta (the workflow's beta 'auto' is beta*(n))")
        if self.loss == "bonbon" and self.alpha is None:
            raise ValueError("loss 'bonbon' needs alpha, the weight of its SFT term")


OBJECTIVE_FIELDS = ("loss", "beta", "alpha", "label_smoothing", "reference_free")


def config_from_dict(values: dict[str, Any]) -> TrainConfig:
    """A TrainConfig from a mapping: the objective (``OBJECTIVE_FIELDS``) and loop settings, which are
    checked against the schema's ``definitions.training`` and completed with its defaults (a partial
    ``lora`` block key by key). Raises ValueError naming each bad or unknown option."""
    loop = {k: v for k, v in values.items() if k not in OBJECTIVE_FIELDS}
    problems = schema_errors({"training": loop})
    if problems:
        raise ValueError("invalid training options:\n  " + "\n  ".join(problems))
    defaults = training_defaults()
    return TrainConfig(**{**defaults, **values, "lora": {**defaults["lora"], **values.get("lora", {})}})


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
    if cfg.loss == "sft":
        raise ValueError("train() is for preference losses; use sft() for loss 'sft'")
    tokenizer = load_tokenizer(policy_path)
    frame = read_table(pairs_path, PAIR_TEXT_COLUMNS, allow_empty=True)
    examples, counts = tokenize_pairs(
        frame, tokenizer, cfg.max_prompt_length, cfg.max_length, source=str(pairs_path)
    )
    if ref_logps_path is not None:
        attach_reference(examples, ref_logps_path)
    elif not (cfg.loss == "dpo" and cfg.reference_free):
        raise ValueError(f"loss {cfg.loss!r} needs reference log-probs (ref_logps_path is None)")
    else:
        for e in examples:
            e["chosen_ref_logp"] = e["rejected_ref_logp"] = 0.0
    examples, validation = split_validation(examples, cfg.validation_fraction)
    info = {"pairs_path": str(pairs_path), "ref_logps_path": str(ref_logps_path), "data": counts,
            "validation_pairs": len(validation)}
    return _fit(policy_path, tokenizer, examples, Path(out_dir), cfg, info, callback, validation)


def sft(
    base_path: str | Path,
    texts: pd.DataFrame,
    out_dir: str | Path,
    cfg: TrainConfig,
    callback: Callable[[int, dict[str, float]], None] | None = None,
) -> dict[str, Any]:
    """Supervised fine-tuning on (prompt, response) rows: the same loop, loss = mean token NLL of
    the responses (prompt tokens not counted). Returns the run summary."""
    cfg = replace(cfg, loss="sft")
    tokenizer = load_tokenizer(base_path)
    examples, counts = tokenize_sft(texts, tokenizer, cfg.max_prompt_length, cfg.max_length)
    return _fit(base_path, tokenizer, examples, Path(out_dir), cfg, {"data": counts}, callback)


def attach_reference(examples: list[dict[str, Any]], ref_logps_path: str | Path) -> None:
    """Join precomputed reference log-probs into the examples on (prompt_id, chosen_idx, rejected_idx).

    Raises ValueError naming the file when a pair has no finite reference log-prob, or when the
    response lengths differ (the file was computed with another tokenizer or max_length).
    """
    needed = ["prompt_id", "chosen_idx", "rejected_idx", "chosen_ref_logp", "rejected_ref_logp"]
    ref = read_table(ref_logps_path, needed, allow_empty=True)
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


@dataclass
class _Run:
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


def _fit(
    model_path: str | Path,
    tokenizer: Any,
    examples: list[dict[str, Any]],
    out_dir: Path,
    cfg: TrainConfig,
    info: dict[str, Any],
    callback: Callable[[int, dict[str, float]], None] | None,
    validation: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    started = time.perf_counter()
    run = _setup(model_path, len(examples), out_dir, cfg, info)
    _resume(run, cfg, len(examples))
    _init_trackers(run.accelerator, cfg, out_dir.name)  # all processes; after the resume's metrics reset
    pad = pad_id(tokenizer)
    order, order_epoch = [], -1
    progress = tqdm(range(run.start_step, run.total_steps), desc=f"train {cfg.loss}", disable=not run.main,
                    mininterval=5)
    for step in progress:
        epoch, position = divmod(step, run.steps_per_epoch)
        if epoch != order_epoch:
            order, order_epoch = epoch_order(len(examples), cfg.seed, epoch), epoch
        lr = learning_rate(cfg, step)
        step_started = time.perf_counter()
        batches = _micro_batches(examples, order, position, cfg, run.accelerator, pad)
        means, tokens, grad_norm = _optimizer_step(run, cfg, batches, lr, step, epoch)
        row = {"step": step, "epoch": epoch, **{name: means.get(name, math.nan) for name in LOSS_METRICS},
               "grad_norm": grad_norm, "lr": lr, "tokens_per_s": tokens / max(time.perf_counter() - step_started, 1e-9)}
        # after the step: validation, snapshot, checkpoint
        done = step + 1
        if validation and (done % cfg.eval_every == 0 or done == run.total_steps):
            row.update(_validate(run, validation, cfg, pad))
        _log_step(run, cfg, row, progress)
        snapshot_every = cfg.checkpoint_every if cfg.snapshot_every is None else cfg.snapshot_every
        if snapshot_every and done % snapshot_every == 0 and done < run.total_steps:  # before the checkpoint:
            _save_snapshot(run, tokenizer, done)  # a resume past it never rewrites it
        if done % cfg.checkpoint_every == 0 and done < run.total_steps:
            _save_checkpoint(run, cfg, done, len(examples))
        if callback is not None:
            callback(step, row)
    return _save_final(run, tokenizer, cfg, info, len(examples), started)


def learning_rate(cfg: TrainConfig, step: int) -> float:
    """Linear warmup, then constant (the paper's): lr * min(1, (step + 1) / (warmup_steps + 1)).

    Set by hand each step: a pure function of the step survives a resume, and accelerate's prepared
    scheduler would step once per process."""
    return cfg.learning_rate * min(1.0, (step + 1) / (cfg.warmup_steps + 1))


def epoch_order(n_examples: int, seed: int, epoch: int) -> list[int]:
    """The order of the examples in ``epoch``: a permutation seeded by (seed, epoch), so step s always
    sees the same pairs (a resume needs it) and every epoch is reshuffled."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n_examples, generator=generator).tolist()


def _setup(model_path: str | Path, n_examples: int, out_dir: Path, cfg: TrainConfig, info: dict[str, Any]) -> _Run:
    """Accelerator (with the trackers of ``cfg.report_to``), step counts, the policy (it starts as the
    reference model; with ``cfg.lora``, as adapters on it, their parameter counts put in ``info``) and
    its optimizer."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    # mixed precision only on a GPU: CPU autocast would just make the tests slow and inexact
    accelerator = Accelerator(
        mixed_precision=cfg.mixed_precision if torch.cuda.is_available() else "no",
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        **_tracker_options(cfg, out_dir),
    )
    set_seed(cfg.seed)
    pairs_per_step = cfg.batch_size * cfg.gradient_accumulation_steps * accelerator.num_processes
    steps_per_epoch = n_examples // pairs_per_step  # the remainder of an epoch is skipped
    if steps_per_epoch == 0:
        raise ValueError(f"{n_examples} examples are fewer than the {pairs_per_step} one optimizer step needs")
    model = load_causal_lm(model_path, dtype=torch.float32)
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    model = _wrap_lora(model, cfg.lora, info)  # after checkpointing: peft then makes the inputs require grad
    optimizer_class = torch.optim.RMSprop if cfg.optimizer == "rmsprop" else torch.optim.AdamW
    optimizer = optimizer_class(model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    model, optimizer = accelerator.prepare(model, optimizer)
    model.train()
    total_steps = cfg.max_steps if cfg.max_steps is not None else cfg.epochs * steps_per_epoch
    return _Run(accelerator, model, optimizer, out_dir, steps_per_epoch, total_steps)


def _resume(run: _Run, cfg: TrainConfig, n_examples: int) -> None:
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
        changed = _check_resumable(state, cfg, n_examples)
        if changed:  # checkpoints of other settings: never mixed into this run
            if run.main:
                _set_aside(run.out_dir, cfg.on_config_change, f"{latest} was written with other settings ({changed})")
            run.accelerator.wait_for_everyone()
            latest = None
    if latest is not None:
        run.accelerator.load_state(str(latest))
        run.start_step = state["step"]
        log.info("resuming from %s at step %d of %d", latest, run.start_step, run.total_steps)
    if run.main:
        _reset_metrics(run.metrics_path, keep_before=run.start_step)


def _micro_batches(
    examples: list[dict[str, Any]], order: list[int], position: int, cfg: TrainConfig, accelerator: Any, pad: int
) -> Iterator[dict[str, Any]]:
    """This process's micro-batches of step ``position`` of the epoch: micro-batch m takes slot
    (position * G + m) of P * B pairs, and process p its p-th slice, so P processes x B pairs compute
    the step of one process x P * B pairs."""
    for micro in range(cfg.gradient_accumulation_steps):
        slot = (position * cfg.gradient_accumulation_steps + micro) * accelerator.num_processes
        first = (slot + accelerator.process_index) * cfg.batch_size
        yield collate_pairs([examples[i] for i in order[first : first + cfg.batch_size]], pad)


def _optimizer_step(
    run: _Run, cfg: TrainConfig, batches: Iterable[dict[str, Any]], lr: float, step: int, epoch: int
) -> tuple[dict[str, float], int, float]:
    """One optimizer step over the micro-batches: per micro-batch one policy forward and backward
    (accelerate divides the loss by the accumulation steps and syncs gradients on the last), then
    clip and update once. Returns the metrics (means over micro-batches, then over processes), the
    tokens seen by all processes and the gradient norm before clipping."""
    accelerator, model, optimizer = run.accelerator, run.model, run.optimizer
    for group in optimizer.param_groups:
        group["lr"] = lr
    sums: dict[str, torch.Tensor] = {}
    tokens, grad_norm = 0, math.nan
    for micro, batch in enumerate(batches):
        tokens += int(batch["attention_mask"].sum())
        with accelerator.accumulate(model):
            loss, metrics = _batch_loss(model, batch, cfg, accelerator.device)
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
        for name, value in {"loss": loss.detach(), **metrics}.items():
            sums[name] = sums.get(name, 0.0) + value.cpu().mean().double()
    names = list(sums)  # the same names in the same order on every process
    stacked = torch.stack([sums[name] for name in names]).to(accelerator.device) / cfg.gradient_accumulation_steps
    means = accelerator.reduce(stacked, "mean").cpu().tolist()
    tokens = int(accelerator.reduce(torch.tensor(tokens, device=accelerator.device), "sum"))
    return dict(zip(names, means, strict=True)), tokens, grad_norm


def _batch_loss(
    model: Any, batch: dict[str, Any], cfg: TrainConfig, device: Any
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The loss of one micro-batch from ONE policy forward over its chosen rows then its rejected rows."""
    logps = sequence_logps(
        model,
        batch["input_ids"].to(device),
        batch["attention_mask"].to(device),
        batch["response_mask"].to(device),
        padding_free=cfg.padding_free,
    )
    n = batch["n_pairs"]
    references = [batch[k].to(device) if k in batch else None for k in ("chosen_ref_logp", "rejected_ref_logp")]
    losses, metrics = LOSSES[cfg.loss](logps[:n], logps[n:], *references, **_loss_options(cfg))
    if cfg.loss == "sft":  # the per-token mean over the micro-batch (see sft_loss)
        return losses.sum() / batch["response_mask"].sum().to(device), metrics
    return losses.mean(), metrics


def _loss_options(cfg: TrainConfig) -> dict[str, Any]:
    return {
        "dpo": {"beta": cfg.beta, "label_smoothing": cfg.label_smoothing, "reference_free": cfg.reference_free},
        "ipo": {"beta": cfg.beta},
        "bonbon": {"beta": cfg.beta, "alpha": cfg.alpha},
        "sft": {},
    }[cfg.loss]


def _log_step(run: _Run, cfg: TrainConfig, row: dict[str, float], progress: Any) -> None:
    if not run.main:
        return
    _append_metrics(run.metrics_path, row)
    _log_trackers(run.accelerator, row)
    progress.set_postfix(loss=f"{row['loss']:.4g}", margin=f"{row['margin']:.3g}", refresh=False)
    if row["step"] % cfg.log_every == 0 or row["step"] == run.total_steps - 1:
        log.info("step %d/%d %s", row["step"] + 1, run.total_steps, _format(row))


def _save_final(
    run: _Run, tokenizer: Any, cfg: TrainConfig, info: dict[str, Any], n_examples: int, started: float
) -> dict[str, Any]:
    """The final model, written to a temp dir and moved in; train_summary.json last marks completion."""
    accelerator = run.accelerator
    accelerator.wait_for_everyone()
    tmp = run.out_dir / ".model-tmp"
    _write_policy(run, tokenizer, tmp)
    summary: dict[str, Any] = {}
    if run.main:
        for path in tmp.iterdir():
            if path.is_dir():  # adapter/ of a LoRA run that is extended: os.replace cannot replace a full dir
                shutil.rmtree(run.out_dir / path.name, ignore_errors=True)
            os.replace(path, run.out_dir / path.name)
        tmp.rmdir()
        summary = _summary(cfg, run, info, n_examples)
        summary["seconds"] = time.perf_counter() - started
        tmp_summary = run.out_dir / f".{SUMMARY_FILE}.tmp"
        tmp_summary.write_text(json.dumps(_jsonable(summary), indent=2) + "\n")
        os.replace(tmp_summary, run.out_dir / SUMMARY_FILE)
        if cfg.checkpoints_after_training == "delete":  # after the summary: a kill before it can still resume
            shutil.rmtree(run.checkpoints, ignore_errors=True)
        log.info("trained %d steps (resumed at %d), model in %s", run.total_steps, run.start_step, run.out_dir)
    accelerator.wait_for_everyone()
    _end_trackers(accelerator)
    return summary


# ---------------------------------------------------------------------------------------- helpers


_STEP_DIR = re.compile(r"^step-(\d+)$")


def _latest_checkpoint(root: Path) -> Path | None:
    # a step-* dir is complete by construction (renamed from .tmp-* after everything was written)
    found = [(int(m.group(1)), p) for p in root.glob("step-*") if (m := _STEP_DIR.match(p.name))]
    found = [(s, p) for s, p in found if (p / "trainer_state.json").is_file()]
    return max(found)[1] if found else None


def _check_resumable(state: dict[str, Any], cfg: TrainConfig, n_examples: int) -> str:
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


def _save_checkpoint(run: _Run, cfg: TrainConfig, done: int, n_examples: int) -> None:
    """Write to .tmp-step-N, then rename to step-N: a kill mid-save leaves the previous one intact."""
    accelerator, root = run.accelerator, run.checkpoints
    state = {"step": done, "epoch": done // run.steps_per_epoch, "position_in_epoch": done % run.steps_per_epoch,
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
        old = sorted(p for p in root.glob("step-*") if _STEP_DIR.match(p.name))
        for path in old[: -cfg.keep_checkpoints]:
            shutil.rmtree(path, ignore_errors=True)
        log.info("checkpoint %s", final)
    accelerator.wait_for_everyone()


def split_validation(examples: list[dict[str, Any]], fraction: float) -> tuple[list[dict], list[dict]]:
    """(train, validation): a prompt's pairs are held out when the hash of its prompt id falls below
    ``fraction``, so every run of one pair file (and every n) holds out the same prompts."""
    if fraction <= 0:
        return examples, []

    def held_out(prompt_id: str) -> bool:
        return stable_hash("validation", prompt_id, digits=8, algorithm="sha1") < fraction * 2**32

    train = [e for e in examples if not held_out(e["prompt_id"])]
    validation = [e for e in examples if held_out(e["prompt_id"])]
    if not validation or not train:
        raise ValueError(f"validation_fraction {fraction} leaves {len(train)} training and {len(validation)} "
                         f"validation pairs of {len(examples)}; both need at least one")
    return train, validation


@torch.no_grad()
def _validate(run: _Run, validation: list[dict[str, Any]], cfg: TrainConfig, pad: int) -> dict[str, float]:
    """The training objective and its parts on the held-out pairs (means over pairs; SFT: the loss is
    the mean token NLL of the chosen responses), with the policy in eval mode (no dropout)."""
    run.model.eval()
    totals: dict[str, float] = {}
    tokens = 0
    for first in range(0, len(validation), cfg.batch_size):
        batch = collate_pairs(validation[first : first + cfg.batch_size], pad)
        device, n = run.accelerator.device, batch["n_pairs"]
        logps = sequence_logps(run.model, batch["input_ids"].to(device), batch["attention_mask"].to(device),
                               batch["response_mask"].to(device), padding_free=cfg.padding_free).float().cpu()
        tokens += int(batch["response_mask"][:n].sum())
        references = [batch.get(k) for k in ("chosen_ref_logp", "rejected_ref_logp")]
        losses, metrics = LOSSES[cfg.loss](logps[:n], logps[n:], *references, **_loss_options(cfg))
        for name, value in {"loss": losses, **metrics}.items():
            totals[name] = totals.get(name, 0.0) + float(value.sum())
    run.model.train()
    means = {f"val_{name}": total / len(validation) for name, total in totals.items()}
    if cfg.loss == "sft":
        means["val_loss"] = totals["loss"] / tokens
    return {name: means.get(name, math.nan) for name in VALIDATION_COLUMNS}


def _save_snapshot(run: _Run, tokenizer: Any, step: int) -> None:
    """The policy at ``step`` in from_pretrained form (``snapshots/step-N``: weights, config, tokenizer),
    which evaluation samples like a final model; written to a temp dir and renamed, so a kill leaves
    no half snapshot. Not deleted with the checkpoints (checkpoints_after_training: delete)."""
    final = run.snapshots / f"step-{step:06d}"
    tmp = final.with_name(f".tmp-{final.name}")
    _write_policy(run, tokenizer, tmp)
    if run.main:
        shutil.rmtree(final, ignore_errors=True)
        os.rename(tmp, final)
    run.accelerator.wait_for_everyone()


def _write_policy(run: _Run, tokenizer: Any, directory: Path) -> None:
    """The policy in from_pretrained form (weights, config, tokenizer) in a fresh ``directory``, written by
    the main process; every process takes part in gathering a sharded model's weights."""
    state_dict = run.accelerator.get_state_dict(run.model)
    if run.main:
        shutil.rmtree(directory, ignore_errors=True)
        _save_policy(run.accelerator.unwrap_model(run.model), state_dict, directory)
        tokenizer.save_pretrained(directory)


# ---------------------------------------------------------------------------------------- LoRA


def _wrap_lora(model: Any, options: LoraOptions, info: dict[str, Any]) -> Any:
    """The model with peft LoRA adapters on ``options.target_modules`` when LoRA is on (only the adapters
    require grad: the optimizer keeps no state for the frozen weights, which get no grad), else the model
    itself. Records the trainable and total parameter counts in ``info`` (and so in the run summary)."""
    if options.enabled:
        from peft import LoraConfig, get_peft_model

        lora = LoraConfig(r=options.r, lora_alpha=options.alpha, lora_dropout=options.dropout,
                          target_modules=options.target_modules, task_type="CAUSAL_LM")
        model = get_peft_model(model, lora)  # B = 0 at the start: the policy starts equal to the reference
    info["trainable_parameters"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
    info["parameters"] = sum(p.numel() for p in model.parameters())
    return model


def _save_policy(model: Any, state_dict: dict[str, torch.Tensor], directory: Path) -> None:
    """The policy in from_pretrained form in ``directory``. A LoRA policy is saved with its adapters
    MERGED into the weights (W + B @ A * alpha / r), so sampling (transformers or vLLM), evaluation and
    every other reader load it as they load a full-weight run; its peft adapter goes to ``adapter/``
    beside it (``PeftModel.from_pretrained(reference, "adapter")`` rebuilds the unmerged policy).
    The weights are one file, never shards: the workflow declares model.safetensors as an output."""
    peft = sys.modules.get("peft")  # never imported: the model cannot be a peft model
    if peft is None or not isinstance(model, peft.PeftModel):
        model.save_pretrained(directory, state_dict=state_dict, max_shard_size=ONE_WEIGHTS_FILE)
        return
    import copy

    # merged in a CPU copy: merging in place and unmerging would not give the training weights back
    # bit for bit. The copy's frozen weights are the reference model's, reloaded from its directory.
    config = model.peft_config["default"]
    base = load_causal_lm(config.base_model_name_or_path, dtype=torch.float32)
    policy = peft.get_peft_model(base, copy.deepcopy(config))
    policy.load_state_dict({k: v.detach().to("cpu", torch.float32) for k, v in state_dict.items()})
    policy.save_pretrained(directory / ADAPTER_DIR)
    policy.merge_and_unload().save_pretrained(directory, max_shard_size=ONE_WEIGHTS_FILE)


# ---------------------------------------------------------------------------------------- trackers


def _tracker_names(report_to: str | list[str]) -> list[str]:
    names = [report_to] if isinstance(report_to, str) else list(report_to)
    return [name for name in names if name != "none"]


def _tracker_options(cfg: TrainConfig, out_dir: Path) -> dict[str, Any]:
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


def _init_trackers(accelerator: Any, cfg: TrainConfig, run_name: str) -> None:
    """Start each tracker of ``accelerator.log_with`` through ``init_trackers`` with the run's config.
    One at a time: a tracker that cannot start (no server, no login, no network) is dropped with a warning
    and the run goes on with the others; metrics.csv has every value anyway."""
    wanted = list(accelerator.log_with)
    if not wanted:
        return
    config = {"run": run_name, **_flat_config(asdict(cfg))}
    # a resumed run logs the steps past its checkpoint again; tensorboard's reader drops the earlier ones
    kwargs: dict[str, dict[str, Any]] = {"wandb": _wandb_options(accelerator, run_name), "trackio": {"name": run_name},
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
    return {"name": run_name, "mode": os.environ.get("WANDB_MODE", "offline"), "dir": str(accelerator.logging_dir)}


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


def _log_trackers(accelerator: Any, row: dict[str, float]) -> None:
    """A metrics.csv row to the trackers at its step (its blank cells are left out). What
    ``accelerator.log`` does, one tracker at a time: one that fails is dropped with a warning."""
    values = {k: float(v) for k, v in row.items() if k != "step" and math.isfinite(v)}
    for tracker in list(accelerator.trackers):
        try:
            tracker.log(values, step=int(row["step"]))
        except Exception as error:  # as above: a tracker must not fail training
            log.warning("tracker %s failed to log step %d (%s: %s); dropped for the rest of the run", tracker.name,
                        row["step"], type(error).__name__, error)
            accelerator.trackers.remove(tracker)


def _end_trackers(accelerator: Any) -> None:
    if not accelerator.trackers:
        return
    try:
        accelerator.end_training()  # finishes every tracker (uploads, closes event files)
    except Exception as error:  # the model is saved: a tracker that fails to finish must not undo that
        log.warning("trackers did not finish cleanly (%s: %s)", type(error).__name__, error)


# ---------------------------------------------------------------------------------------- metrics


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


def _summary(cfg: TrainConfig, run: _Run, info: dict[str, Any], n_examples: int) -> dict[str, Any]:
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
    snapshots = [int(m.group(1)) for p in run.snapshots.glob("step-*") if (m := _STEP_DIR.match(p.name))]
    summary["snapshot_steps"] = sorted(s for s in snapshots if s < run.total_steps)
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
