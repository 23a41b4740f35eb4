"""The training loop: BoNBoN (and DPO / IPO / SFT) on ``accelerate``.

Read :func:`fit` top to bottom: data order, model and optimizer, resume, then per step one policy
forward over the chosen AND rejected rows (a [2B, T] batch), the loss, backward, clip, update, log,
checkpoint. The reference model is never loaded here: its log-probs were computed once
(:mod:`bonbon.reference`) and are joined into the examples. The SFT term of BoNBoN reuses the chosen
log-prob of that same forward. Validation computes the same per-pair losses as training, under no_grad.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from tqdm.auto import tqdm

from bonbon.batching import collate_pairs, pad_id, tokenize_pairs, tokenize_sft
from bonbon.logprobs import padding_free_gap, padding_free_problem, sequence_logps
from bonbon.losses import LOSSES
from bonbon.models import load_causal_lm, load_tokenizer
from bonbon.tables import LOSS_METRICS, PAIR_TEXT_COLUMNS, VALIDATION_COLUMNS, read_table
from bonbon.train.checkpoints import resume, save_checkpoint, save_snapshot, write_policy
from bonbon.train.data import attach_reference, split_validation
from bonbon.train.lora import wrap_lora
from bonbon.train.metrics import append_metrics, format_row, jsonable, run_summary
from bonbon.train.options import TrainConfig
from bonbon.train.state import SUMMARY_FILE, Run
from bonbon.train.trackers import end_trackers, init_trackers, log_trackers, tracker_options

log = logging.getLogger(__name__)


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
    return fit(policy_path, tokenizer, examples, Path(out_dir), cfg, info, callback, validation)


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
    return fit(base_path, tokenizer, examples, Path(out_dir), cfg, {"data": counts}, callback)


def fit(
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
    pad = pad_id(tokenizer)
    # before the resume: checkpoints record (and are compared on) the layout that ran
    cfg = replace(cfg, padding_free=_padding_free(run, cfg, examples, pad))
    resume(run, cfg, len(examples))
    init_trackers(run.accelerator, cfg, out_dir.name)  # all processes; after the resume's metrics reset
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
               "grad_norm": grad_norm, "lr": lr,
               "tokens_per_s": tokens / max(time.perf_counter() - step_started, 1e-9)}
        # after the step: validation, snapshot, checkpoint
        done = step + 1
        if validation and (done % cfg.eval_every == 0 or done == run.total_steps):
            row.update(_validate(run, validation, cfg, pad))
        _log_step(run, cfg, row, progress)
        snapshot_every = cfg.checkpoint_every if cfg.snapshot_every is None else cfg.snapshot_every
        if snapshot_every and done % snapshot_every == 0 and done < run.total_steps:  # before the checkpoint:
            save_snapshot(run, tokenizer, done)  # a resume past it never rewrites it
        if done % cfg.checkpoint_every == 0 and done < run.total_steps:
            save_checkpoint(run, cfg, done, len(examples))
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


def _setup(model_path: str | Path, n_examples: int, out_dir: Path, cfg: TrainConfig,
           info: dict[str, Any]) -> Run:
    """Accelerator (with the trackers of ``cfg.report_to``), step counts, the policy (it starts as the
    reference model; with ``cfg.lora``, as adapters on it, their parameter counts put in ``info``) and
    its optimizer."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    # mixed precision only on a GPU: CPU autocast would just make the tests slow and inexact
    accelerator = Accelerator(
        mixed_precision=cfg.mixed_precision if torch.cuda.is_available() else "no",
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        **tracker_options(cfg, out_dir),
    )
    set_seed(cfg.seed)
    pairs_per_step = cfg.batch_size * cfg.gradient_accumulation_steps * accelerator.num_processes
    steps_per_epoch = n_examples // pairs_per_step  # the remainder of an epoch is skipped
    if steps_per_epoch == 0:
        raise ValueError(f"{n_examples} examples are fewer than the {pairs_per_step} one optimizer step "
                         "needs")
    model = load_causal_lm(model_path, dtype=torch.float32)
    if cfg.gradient_checkpointing:
        # transformers 5.25 renamed it (the old name warns, and goes in v6); 5.24 has only the old one
        getattr(model, "activation_checkpointing_enable", model.gradient_checkpointing_enable)()
    model = wrap_lora(model, cfg.lora, info)  # after checkpointing: peft then makes the inputs require grad
    optimizer_class = torch.optim.RMSprop if cfg.optimizer == "rmsprop" else torch.optim.AdamW
    optimizer = optimizer_class(model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    model, optimizer = accelerator.prepare(model, optimizer)
    model.train()
    total_steps = cfg.max_steps if cfg.max_steps is not None else cfg.epochs * steps_per_epoch
    return Run(accelerator, model, optimizer, out_dir, steps_per_epoch, total_steps)


def _padding_free(run: Run, cfg: TrainConfig, examples: list[dict[str, Any]], pad: int) -> bool:
    """training.padding_free resolved for this model: packed rows where the model's attention supports
    them and their log-probs on the first micro-batch equal the padded ones (mean |diff| per token within
    PACKED_TOLERANCE); "auto" falls back to padded rows otherwise, True raises."""
    if cfg.padding_free is False:
        return False
    problem = padding_free_problem(run.model)
    if problem is None:
        batch = collate_pairs(examples[: cfg.batch_size], pad)
        device = run.accelerator.device
        try:
            gap = padding_free_gap(run.model, *(batch[k].to(device) for k in
                                                ("input_ids", "attention_mask", "response_mask")))
        except (RuntimeError, TypeError, ValueError) as error:  # a forward that cannot take a packed row
            problem = f"a packed forward failed ({type(error).__name__}: {error})"
        else:
            tolerance = PACKED_TOLERANCE[run.accelerator.mixed_precision != "no"]
            if gap > tolerance:
                problem = (f"packed log-probs differ from padded ones by {gap:.3g} nats a token on the first "
                           f"micro-batch (tolerance {tolerance})")
            else:
                log.info("padding_free: packed rows (first micro-batch: mean |packed - padded| %.2g nats a "
                         "token)", gap)
    if problem is None:
        return True
    if cfg.padding_free is True:
        raise ValueError(f"training.padding_free is true but {problem}; set it to auto or false")
    log.warning("padding_free auto: padded rows, because %s", problem)
    return False


# mean |packed - padded| per-token log-prob allowed on the first micro-batch: [float32, mixed precision]
PACKED_TOLERANCE = (1e-3, 5e-2)


def _micro_batches(
    examples: list[dict[str, Any]], order: list[int], position: int, cfg: TrainConfig, accelerator: Any,
    pad: int
) -> Iterator[dict[str, Any]]:
    """This process's micro-batches of step ``position`` of the epoch: micro-batch m takes slot
    (position * G + m) of P * B pairs, and process p its p-th slice, so P processes x B pairs compute
    the step of one process x P * B pairs."""
    for micro in range(cfg.gradient_accumulation_steps):
        slot = (position * cfg.gradient_accumulation_steps + micro) * accelerator.num_processes
        first = (slot + accelerator.process_index) * cfg.batch_size
        yield collate_pairs([examples[i] for i in order[first : first + cfg.batch_size]], pad)


def _optimizer_step(
    run: Run, cfg: TrainConfig, batches: Iterable[dict[str, Any]], lr: float, step: int, epoch: int
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
            losses, metrics = batch_losses(model, batch, cfg, accelerator.device)
            loss = _mean_loss(losses, batch, cfg)
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
    stacked = (torch.stack([sums[name] for name in names]).to(accelerator.device)
               / cfg.gradient_accumulation_steps)
    means = accelerator.reduce(stacked, "mean").cpu().tolist()
    tokens = int(accelerator.reduce(torch.tensor(tokens, device=accelerator.device), "sum"))
    return dict(zip(names, means, strict=True)), tokens, grad_norm


def batch_losses(
    model: Any, batch: dict[str, Any], cfg: TrainConfig, device: Any
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Per-pair losses and metrics of one micro-batch from ONE policy forward over its chosen rows then
    its rejected rows: what training minimises and validation reports."""
    logps = sequence_logps(
        model,
        batch["input_ids"].to(device),
        batch["attention_mask"].to(device),
        batch["response_mask"].to(device),
        padding_free=cfg.padding_free,
    )
    n = batch["n_pairs"]
    references = [batch[k].to(device) if k in batch else None
                  for k in ("chosen_ref_logp", "rejected_ref_logp")]
    return LOSSES[cfg.loss](logps[:n], logps[n:], *references, **_loss_options(cfg))


def _mean_loss(losses: torch.Tensor, batch: dict[str, Any], cfg: TrainConfig) -> torch.Tensor:
    """The micro-batch's loss: the mean over pairs; SFT: the per-token mean (see sft_loss)."""
    if cfg.loss == "sft":
        return losses.sum() / batch["response_mask"].sum().to(losses.device)
    return losses.mean()


def _loss_options(cfg: TrainConfig) -> dict[str, Any]:
    return {
        "dpo": {"beta": cfg.beta, "label_smoothing": cfg.label_smoothing,
                "reference_free": cfg.reference_free},
        "ipo": {"beta": cfg.beta},
        "bonbon": {"beta": cfg.beta, "alpha": cfg.alpha},
        "sft": {},
    }[cfg.loss]


@torch.no_grad()
def _validate(run: Run, validation: list[dict[str, Any]], cfg: TrainConfig, pad: int) -> dict[str, float]:
    """The training objective and its parts on the held-out pairs (means over pairs; SFT: the loss is
    the mean token NLL of the chosen responses), with the policy in eval mode (no dropout)."""
    run.model.eval()
    totals: dict[str, float] = {}
    tokens = 0
    for first in range(0, len(validation), cfg.batch_size):
        batch = collate_pairs(validation[first : first + cfg.batch_size], pad)
        losses, metrics = batch_losses(run.model, batch, cfg, run.accelerator.device)
        tokens += int(batch["response_mask"][: batch["n_pairs"]].sum())
        for name, value in {"loss": losses, **metrics}.items():
            totals[name] = totals.get(name, 0.0) + float(value.sum())
    run.model.train()
    means = {f"val_{name}": total / len(validation) for name, total in totals.items()}
    if cfg.loss == "sft":
        means["val_loss"] = totals["loss"] / tokens
    return {name: means.get(name, math.nan) for name in VALIDATION_COLUMNS}


def _log_step(run: Run, cfg: TrainConfig, row: dict[str, float], progress: Any) -> None:
    if not run.main:
        return
    append_metrics(run.metrics_path, row)
    log_trackers(run.accelerator, row)
    progress.set_postfix(loss=f"{row['loss']:.4g}", margin=f"{row['margin']:.3g}", refresh=False)
    if row["step"] % cfg.log_every == 0 or row["step"] == run.total_steps - 1:
        log.info("step %d/%d %s", row["step"] + 1, run.total_steps, format_row(row))


def _save_final(
    run: Run, tokenizer: Any, cfg: TrainConfig, info: dict[str, Any], n_examples: int, started: float
) -> dict[str, Any]:
    """The final model, written to a temp dir and moved in; train_summary.json last marks completion."""
    accelerator = run.accelerator
    accelerator.wait_for_everyone()
    tmp = run.out_dir / ".model-tmp"
    write_policy(run, tokenizer, tmp)
    summary: dict[str, Any] = {}
    if run.main:
        for path in tmp.iterdir():
            if path.is_dir():  # adapter/ of a LoRA run that is extended: os.replace cannot replace a full dir
                shutil.rmtree(run.out_dir / path.name, ignore_errors=True)
            os.replace(path, run.out_dir / path.name)
        tmp.rmdir()
        summary = run_summary(cfg, run, info, n_examples)
        summary["seconds"] = time.perf_counter() - started
        tmp_summary = run.out_dir / f".{SUMMARY_FILE}.tmp"
        tmp_summary.write_text(json.dumps(jsonable(summary), indent=2) + "\n")
        os.replace(tmp_summary, run.out_dir / SUMMARY_FILE)
        if cfg.checkpoints_after_training == "delete":  # after the summary: a kill before it can still resume
            shutil.rmtree(run.checkpoints, ignore_errors=True)
        log.info("trained %d steps (resumed at %d), model in %s", run.total_steps, run.start_step,
                 run.out_dir)
    accelerator.wait_for_everyone()
    end_trackers(accelerator)
    return summary

