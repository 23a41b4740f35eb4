"""DPO training through ``bonbon.train`` against Hugging Face TRL's ``DPOTrainer``, side by side.

Same policy, same pair file, same reference log-probs, same objective (TRL ``loss_type="sigmoid"``
on log-probs summed over response tokens; ours ``loss: dpo``), same beta, batch size, max length,
optimizer (RMSprop), learning-rate schedule (linear warmup over ``--warmup`` steps, then constant),
gradient clipping, dtype, and the same pairs in the same order at every step. Each run is a fresh
subprocess; the implementations alternate, so load on a shared machine hits both alike.

    pip install -e '.[bench]'     # trl; never a runtime dependency
    python perf/bench_vs_trl.py --sft results/models/sft --pairs results/pairs/toy/n8.parquet

What is aligned, and why (every difference found between the two):

* EOS: TRL appends the tokenizer's EOS to every response (text that does not end with it), also to
  one the sampler cut off at ``max_new_tokens``; the workflow appends it only to finished responses
  (4 of 480 chosen responses in the toy n=8 file are unfinished). The benchmark writes its own copy
  of the pair file with every response marked finished, so both sequences end in EOS, and computes
  the reference log-probs of that copy (``bonbon.reference``, the workflow's code).
* Truncation: TRL 1.16 has no ``max_prompt_length``; its collator cuts the END of prompt+response
  (``truncation_mode="keep_start"``) to ``max_length``. Ours cuts the prompt from the left to
  ``max_prompt_length`` and then the response's end. The benchmark uses lengths under which neither
  cuts anything and checks it (the toy file's longest pair is 143 tokens: 192/128 cut nothing).
* Tokens: TRL tokenizes prompt+response as one text and takes the completion from where it departs
  from the tokenized prompt; ours tokenizes prompt and response apart. The equality step checks that
  every sequence gets the same ids and the same completion mask.
* Reference log-probs: TRL's ``precompute_ref_log_probs=True`` runs its own reference pass when the
  trainer is built; here it is fed the same precomputed values ours reads (``_precompute_ref_logps``
  overridden), so both losses see identical constants and neither pays a reference pass in the
  timed loop. The equality step also runs TRL's own reference pass on one batch against the file.
* Schedule and optimizer: TRL gets ``torch.optim.RMSprop`` and a ``LambdaLR`` with ours warmup
  (lr_s = lr * min(1, (s + 1) / (warmup + 1)); TRL's linear warmup starts at 0). Data order: the
  dataset handed to TRL is already in our step order and ``train_sampling_strategy="sequential"``.
* TRL's own defaults that would not be a like-for-like comparison are set to ours:
  ``gradient_checkpointing=False`` (TRL's default is True), ``bf16`` only on CUDA (TRL's default is
  True; on CUDA both run bf16 autocast over float32 weights), ``max_length`` (TRL: 1024),
  ``disable_dropout`` (the models here have no dropout). TRL keeps its per-step metrics (entropy,
  mean logits, token accuracy: part of what its step costs); it logs every 10 steps, ours writes a
  metrics row every step.
* LM head: TRL's fused LM head (``add_fused_lm_head``) scores every position on a device without Triton (the
  CPU) and only the completion positions on CUDA; ours only the positions that predict a response
  token, everywhere.
* TRL 1.16's own ``padding_free`` is disabled (it warns and falls back to padding), so TRL always
  pads; ours is timed padded (``padding_free: false``) and packed (``padding_free: true``, the default
  ``auto`` where the model supports it).

Printed: the equality check (loss and gradient norm of TRL, ours and ours padding-free on the same
batch with the same weights, at step 0 and after ``--later`` optimizer steps of a trained policy),
then for every variant (TRL; ours; ours with ``padding_free``; ours from another checkout with
``--extra``, for a before/after figure of a change) optimizer steps/s and real (non-pad) tokens/s over
the steps after ``--skip``, CPU time per step (process time: less sensitive than wall time to other
jobs on a shared machine, though spinning threads count), peak RSS up to the last step (ours then
writes the final model; TRL here writes nothing), the ratios to TRL (of the medians and per round;
each round runs every variant once, starting with a different one), and the first steps' losses
side by side. Models: the toy SFT policy, and a GPT-NeoX of the
Pythia-160M shape (12 layers, d=768, 12 heads, random init, the toy tokenizer's vocabulary: 86M
parameters) on the first ``--big-pairs`` pairs. Runs unchanged on CUDA (bf16 autocast for both).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch

HERE = Path(__file__).resolve()
DEFAULT_WORK = Path(tempfile.gettempdir()) / "bonbon-bench-vs-trl"


# ---------------------------------------------------------------------------------------------- data


def _digest(*paths: Path, extra: str = "") -> str:
    h = hashlib.sha1(extra.encode())
    for p in paths:
        for f in sorted(p.rglob("*")) if p.is_dir() else [p]:
            if f.is_file() and "checkpoints" not in f.parts:
                h.update(f.name.encode())
                h.update(f.read_bytes())
    return h.hexdigest()[:12]


def step_order(n_examples: int, seed: int) -> list[int]:
    """The example order of bonbon.train's first epoch (a seeded permutation)."""
    generator = torch.Generator().manual_seed(seed * 1_000_003)
    return torch.randperm(n_examples, generator=generator).tolist()


def big_model(tokenizer_dir: Path, out: Path, seed: int = 0) -> None:
    """A Pythia-160M-shaped GPT-NeoX, random init, the toy tokenizer's vocabulary, saved with the
    tokenizer."""
    from transformers import AutoTokenizer, GPTNeoXConfig, GPTNeoXForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    torch.manual_seed(seed)
    config = GPTNeoXConfig(
        vocab_size=len(tokenizer),
        hidden_size=768,
        num_hidden_layers=12,
        num_attention_heads=12,
        intermediate_size=3072,
        max_position_embeddings=2048,
        rotary_pct=0.25,
        use_parallel_residual=True,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    GPTNeoXForCausalLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)


def prepare(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Per model: model dir, the aligned pair file (every response finished, in step order for TRL),
    its reference log-probs, and the real tokens of every step. Cached under --work-dir."""
    from bonbon.reference import write_reference_logps

    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    frame = pd.read_parquet(args.pairs)
    specs = []
    for name in args.models:
        if name == "toy":
            model_dir, rows = Path(args.sft), frame
            steps, skip, runs = args.steps, args.skip, args.runs
        else:
            model_dir = work / "neox-pythia160m-shape" if name == "neox86m" else Path(args.smollm2)
            if name == "neox86m" and not (model_dir / "config.json").is_file():
                big_model(Path(args.sft), model_dir)
            rows = frame.iloc[: args.big_pairs]
            steps, skip, runs = args.big_steps, args.big_skip, args.big_runs
        rows = rows.copy()
        for side in ("chosen", "rejected"):  # TRL ends every response with EOS: so does ours here
            rows[f"{side}_finished"] = True
        key = _digest(
            model_dir,
            Path(args.pairs),
            extra=f"{name}:{len(rows)}:{args.max_length}:{args.max_prompt_length}",
        )
        out = work / f"{name}-{key}"
        out.mkdir(exist_ok=True)
        pairs_path, ref_path = out / "pairs.parquet", out / "ref_logps.parquet"
        if not ref_path.is_file():
            rows.to_parquet(pairs_path)
            print(f"[{name}] reference log-probs of {len(rows)} pairs ...", flush=True)
            write_reference_logps(
                model_dir, pairs_path, ref_path, args.max_prompt_length, args.max_length, batch_size=16
            )
        spec = {
            "name": name,
            "model": str(model_dir),
            "pairs": str(pairs_path),
            "ref": str(ref_path),
            "steps": min(steps, len(rows) // args.batch_size),
            "skip": skip,
            "runs": runs,
        }
        specs.append({**spec, **_steps_and_tokens(spec, args)})
    return specs


def _steps_and_tokens(spec: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """Tokenize as bonbon.train does; the TRL copy of the pairs in step order; real tokens per step."""
    from transformers import AutoTokenizer

    from bonbon.batching import collate_pairs, pad_id, tokenize_pairs
    from bonbon.tables import PAIR_TEXT_COLUMNS, read_table

    tokenizer = AutoTokenizer.from_pretrained(spec["model"])
    frame = read_table(spec["pairs"], PAIR_TEXT_COLUMNS)
    examples, counts = tokenize_pairs(frame, tokenizer, args.max_prompt_length, args.max_length)
    cut = {k: v for k, v in counts.items() if k.endswith("truncated") or k.startswith("dropped")}
    if any(cut.values()):
        raise SystemExit(f"{spec['name']}: the lengths cut or drop pairs ({cut}); raise --max-length")
    order = step_order(len(examples), args.seed)
    used = order[: spec["steps"] * args.batch_size]
    ref = pd.read_parquet(spec["ref"])
    ordered = frame.iloc[used].reset_index(drop=True)
    ordered = ordered.merge(ref, on=["prompt_id", "chosen_idx", "rejected_idx"], how="left", validate="1:1")
    trl_path = Path(spec["pairs"]).with_name("pairs_in_step_order.parquet")
    ordered.to_parquet(trl_path)
    pad = pad_id(tokenizer)
    tokens = []
    for s in range(spec["steps"]):
        batch = collate_pairs(
            [examples[i] for i in used[s * args.batch_size : (s + 1) * args.batch_size]], pad
        )
        tokens.append(int(batch["attention_mask"].sum()))
    longest = max(len(e[side]["input_ids"]) for e in examples for side in ("chosen", "rejected"))
    return {"ordered_pairs": str(trl_path), "tokens": tokens, "longest": longest}


# ------------------------------------------------------------------------------------------- workers


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _lr_lambda(warmup: int):
    return lambda s: min(1.0, (s + 1) / (warmup + 1))


def run_ours(spec: dict[str, Any], opts: dict[str, Any]) -> dict[str, Any]:
    from bonbon.train import TrainConfig, train

    try:  # the schema states every default of the loop; config_from_dict completes a mapping from it
        from bonbon.train import config_from_dict
    except ImportError:  # a --before-src checkout from before it, whose TrainConfig has the defaults
        def config_from_dict(values: dict[str, Any]) -> Any:
            return TrainConfig(**values)

    times, cpu, rss, losses, norms = [], [], [], [], []

    def record(step: int, row: dict[str, float]) -> None:
        _sync()
        times.append(time.perf_counter())
        cpu.append(time.process_time())
        rss.append(_peak_rss_mb())
        losses.append(row["loss"])
        norms.append(row["grad_norm"])

    cfg = config_from_dict(
        {
            "loss": "dpo",
            "beta": opts["beta"],
            "learning_rate": opts["lr"],
            "optimizer": "rmsprop",
            "warmup_steps": opts["warmup"],
            "batch_size": opts["batch_size"],
            "max_grad_norm": opts["max_grad_norm"],
            "max_steps": spec["steps"],
            "max_length": opts["max_length"],
            "max_prompt_length": opts["max_prompt_length"],
            "seed": opts["seed"],
            "checkpoint_every": spec["steps"] + 1,
            "log_every": 10**6,
            "mixed_precision": "bf16" if torch.cuda.is_available() else "no",
            **spec.get("options", {}),
        }
    )
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        train(spec["model"], spec["pairs"], spec["ref"], out, cfg, callback=record)
    return {
        "started": started,
        "times": times,
        "cpu": cpu,
        "rss_steps_mb": rss,
        "losses": losses,
        "grad_norms": norms,
    }


def _trl_trainer(spec: dict[str, Any], opts: dict[str, Any], model: Any, out_dir: str, steps: int):
    """A DPOTrainer on the step-ordered pairs, fed our reference log-probs, recording loss per step."""
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    frame = pd.read_parquet(spec["ordered_pairs"])
    tokenizer = AutoTokenizer.from_pretrained(spec["model"])
    dataset = Dataset.from_dict({k: frame[k].tolist() for k in ("prompt", "chosen", "rejected")})
    ref = {
        "ref_chosen_logps": frame["chosen_ref_logp"].tolist(),
        "ref_rejected_logps": frame["rejected_ref_logp"].tolist(),
    }

    class FedDPOTrainer(DPOTrainer):
        def _precompute_ref_logps(self, dataset, name, batch_size):  # the values ours reads, not a new pass
            for column, values in ref.items():
                dataset = dataset.add_column(column, values)
            return dataset

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            loss = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            self.bench_losses.append(loss.detach())
            return loss

    cuda = torch.cuda.is_available()
    config = DPOConfig(
        output_dir=out_dir,
        per_device_train_batch_size=opts["batch_size"],
        gradient_accumulation_steps=1,
        max_steps=steps,
        learning_rate=opts["lr"],
        max_grad_norm=opts["max_grad_norm"],
        beta=opts["beta"],
        loss_type=["sigmoid"],
        max_length=opts["max_length"],
        truncation_mode="keep_start",
        precompute_ref_log_probs=True,
        gradient_checkpointing=False,
        bf16=cuda,
        fp16=False,
        use_cpu=not cuda,
        logging_steps=10,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        seed=opts["seed"],
        train_sampling_strategy="sequential",
        dataloader_num_workers=0,
    )
    optimizer = torch.optim.RMSprop(model.parameters(), lr=opts["lr"])
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(opts["warmup"]))
    trainer = FedDPOTrainer(
        model=model,
        args=config,
        train_dataset=dataset,
        processing_class=tokenizer,
        optimizers=(optimizer, scheduler),
    )
    trainer.bench_losses = []
    return trainer


def run_trl(spec: dict[str, Any], opts: dict[str, Any]) -> dict[str, Any]:
    from transformers import AutoModelForCausalLM, TrainerCallback

    times, cpu, rss, norms = [], [], [], []

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            _sync()
            times.append(time.perf_counter())
            cpu.append(time.process_time())
            rss.append(_peak_rss_mb())

    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        model = AutoModelForCausalLM.from_pretrained(spec["model"], dtype=torch.float32)
        trainer = _trl_trainer(spec, opts, model, out, spec["steps"])
        trainer.add_callback(Clock())
        trainer.train()
        if getattr(trainer.model, "is_activation_checkpointing", False):
            raise RuntimeError(
                "TRL ran with activation (gradient) checkpointing: not a like-for-like comparison"
            )
        norms = [h["grad_norm"] for h in trainer.state.log_history if "grad_norm" in h]
    return {
        "started": started,
        "times": times,
        "cpu": cpu,
        "rss_steps_mb": rss,
        "losses": [float(v) for v in trainer.bench_losses],
        "grad_norms_logged": norms,
    }


def run_equality(spec: dict[str, Any], opts: dict[str, Any]) -> dict[str, Any]:
    """Both objectives on the same batch with the same weights: at step 0 and after ``later`` steps.

    Ours is evaluated both ways (padded, and ``padding_free``); the policy is trained by ours
    (padded) between the two checks, so the later one is on a policy away from the reference.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from bonbon.batching import collate_pairs, pad_id, tokenize_pairs
    from bonbon.logprobs import sequence_logps
    from bonbon.losses import dpo_loss
    from bonbon.tables import PAIR_TEXT_COLUMNS, read_table

    device, b = _device(), opts["batch_size"]
    tokenizer = AutoTokenizer.from_pretrained(spec["model"])
    frame = read_table(spec["ordered_pairs"], [*PAIR_TEXT_COLUMNS, "chosen_ref_logp", "rejected_ref_logp"])
    examples, _ = tokenize_pairs(frame, tokenizer, opts["max_prompt_length"], opts["max_length"])
    for e, c, r in zip(examples, frame["chosen_ref_logp"], frame["rejected_ref_logp"], strict=True):
        e["chosen_ref_logp"], e["rejected_ref_logp"] = float(c), float(r)

    def load():
        return AutoModelForCausalLM.from_pretrained(spec["model"], dtype=torch.float32).to(device).train()

    ours, packed = load(), load()
    with tempfile.TemporaryDirectory() as out:
        trainer = _trl_trainer(spec, opts, load().cpu(), out, 1)
    theirs = trainer.model.to(device).train()  # with the fused LM head TRL patched in

    # the same tokens: ids and completion mask of every sequence
    data = trainer.train_dataset
    mismatched = 0
    for e, row in zip(examples, data, strict=True):
        for side in ("chosen", "rejected"):
            ids = row["prompt_ids"] + row[f"{side}_ids"]
            mismatched += ids != e[side]["input_ids"] or len(row["prompt_ids"]) != e[side]["prompt_length"]

    def ours_step(model, k, padding_free=False):
        batch = collate_pairs(examples[k * b : (k + 1) * b], pad_id(tokenizer))
        model.zero_grad(set_to_none=True)
        logps = sequence_logps(
            model,
            *(batch[key].to(device) for key in ("input_ids", "attention_mask", "response_mask")),
            padding_free=padding_free,
        )
        ref_c, ref_r = batch["chosen_ref_logp"].to(device), batch["rejected_ref_logp"].to(device)
        loss = dpo_loss(logps[:b], logps[b:], ref_c, ref_r, beta=opts["beta"])[0].mean()
        loss.backward()
        return loss.item(), float(torch.nn.utils.clip_grad_norm_(model.parameters(), float("inf")))

    def theirs_step(k):
        theirs.zero_grad(set_to_none=True)
        inputs = trainer.data_collator([data[i] for i in range(k * b, (k + 1) * b)])
        inputs = {key: v.to(device) for key, v in inputs.items()}
        loss = trainer.compute_loss(theirs, inputs)
        loss.backward()
        return loss.item(), float(torch.nn.utils.clip_grad_norm_(theirs.parameters(), float("inf")))

    cuda = device.type == "cuda"
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else torch.autocast("cpu", enabled=False)
    rows = []
    optimizer = torch.optim.RMSprop(ours.parameters(), lr=opts["lr"])
    later = min(opts["later"], len(examples) // b - 1)
    for step in range(later + 1):
        if step in (0, later):
            theirs.load_state_dict(ours.state_dict())
            packed.load_state_dict(ours.state_dict())
            with autocast:
                lo, go = ours_step(ours, step)
                lp, gp = ours_step(packed, step, padding_free=True)
                lt, gt = theirs_step(step)
            rows.append(
                {
                    "step": step,
                    "loss": {"ours": lo, "ours padding_free": lp, "trl": lt},
                    "grad_norm": {"ours": go, "ours padding_free": gp, "trl": gt},
                }
            )
        for group in optimizer.param_groups:
            group["lr"] = opts["lr"] * _lr_lambda(opts["warmup"])(step)
        with autocast:
            ours_step(ours, step)
        torch.nn.utils.clip_grad_norm_(ours.parameters(), opts["max_grad_norm"])
        optimizer.step()

    # TRL's own reference pass (the SFT weights) on the first batch against the file's values
    from trl.trainer.utils import add_fused_lm_head

    fresh = load().eval()
    add_fused_lm_head(fresh)
    inputs = {k: v.to(device) for k, v in trainer.data_collator([data[i] for i in range(b)]).items()}
    ref_c, ref_r = trainer.compute_ref_log_probs(fresh, inputs)
    ref_diff = max(
        (ref_c.cpu().double() - torch.tensor(frame["chosen_ref_logp"][:b].to_numpy())).abs().max().item(),
        (ref_r.cpu().double() - torch.tensor(frame["rejected_ref_logp"][:b].to_numpy())).abs().max().item(),
    )
    return {
        "sequences": 2 * len(examples),
        "token_mismatches": int(mismatched),
        "rows": rows,
        "ref_pass_max_abs_diff": ref_diff,
    }


# ---------------------------------------------------------------------------------------------- main


def _worker(kind: str, spec: dict[str, Any], opts: dict[str, Any], src: str | None = None) -> dict[str, Any]:
    cmd = [
        sys.executable,
        str(HERE),
        "--worker",
        kind,
        "--spec",
        json.dumps(spec),
        "--opts",
        json.dumps(opts),
    ]
    env = {**os.environ, "TQDM_DISABLE": "1", "TOKENIZERS_PARALLELISM": "false"}
    if src:  # another checkout of bonbon (e.g. the commit before a change), for a before/after figure
        env["PYTHONPATH"] = os.pathsep.join([src, env.get("PYTHONPATH", "")])
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(
            f"{kind} worker failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
        )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _rates(result: dict[str, Any], spec: dict[str, Any]) -> dict[str, float]:
    times, cpu, skip = result["times"], result["cpu"], spec["skip"]
    steps = len(times) - skip
    seconds = times[-1] - times[skip - 1]
    tokens = sum(spec["tokens"][skip : len(times)])
    return {
        "steps_per_s": steps / seconds,
        "tokens_per_s": tokens / seconds,
        "cpu_ms_per_step": 1e3 * (cpu[-1] - cpu[skip - 1]) / steps,
        "rss_train_mb": result["rss_steps_mb"][-1],  # peak up to the last step: not ours' final save
    }


def _spread(values: list[float], fmt: str = "{:.2f}") -> str:
    return f"{fmt.format(statistics.median(values))} ({fmt.format(min(values))}-{fmt.format(max(values))})"


def _variants(args: argparse.Namespace) -> list[dict[str, Any]]:
    variants = [{"name": "trl", "kind": "trl"},
                {"name": "ours", "kind": "ours", "options": {"padding_free": False}}]
    if not args.no_padding_free:
        variants.append({"name": "ours padding_free", "kind": "ours", "options": {"padding_free": True}})
    for name, src, options in args.extra or []:
        variants.append({"name": name, "kind": "ours", "options": json.loads(options), "src": src})
    return variants


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sft", default="results/models/sft", help="toy policy (and reference) model directory"
    )
    parser.add_argument("--pairs", default="results/pairs/toy/n8.parquet", help="pair file")
    parser.add_argument(
        "--models", nargs="+", default=["toy", "neox86m"], choices=["toy", "neox86m", "smollm2"]
    )
    parser.add_argument(
        "--smollm2", default="/tmp/smollm2/model",
        help=("model 'smollm2': a plain directory of SmolLM2-135M-Instruct (its GGUF imported); "
              "runs with the --big-* sizes"),
    )
    parser.add_argument("--runs", type=int, default=3, help="runs per implementation, toy model")
    parser.add_argument(
        "--steps", type=int, default=60, help="optimizer steps per run, toy model (<= 1 epoch)"
    )
    parser.add_argument(
        "--skip", type=int, default=5, help="first steps left out of the rates, toy model (>= 1)"
    )
    parser.add_argument("--big-runs", type=int, default=2, help="runs per implementation, 86M model")
    parser.add_argument("--big-steps", type=int, default=4, help="optimizer steps per run, 86M model")
    parser.add_argument(
        "--big-skip", type=int, default=1, help="first steps left out of the rates, 86M model"
    )
    parser.add_argument(
        "--big-pairs", type=int, default=32, help="pairs of the pair file the 86M model trains on"
    )
    parser.add_argument(
        "--later", type=int, default=20, help="the later step of the equality check, toy model"
    )
    parser.add_argument(
        "--big-later", type=int, default=2, help="the later step of the equality check, 86M model"
    )
    parser.add_argument("--beta", type=float, default=0.1)
    parser.add_argument("--lr", type=float, default=1e-4, help="the workflow's training.learning_rate")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=8, help="pairs per optimizer step")
    parser.add_argument("--max-grad-norm", type=float, default=10.0)
    parser.add_argument("--max-length", type=int, default=192)
    parser.add_argument("--max-prompt-length", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads", type=int, help="torch threads of every run (default: torch's, the cores)"
    )
    parser.add_argument("--show-losses", type=int, default=4, help="first steps whose losses are printed")
    parser.add_argument("--no-equality", action="store_true", help="skip the equality check")
    parser.add_argument("--no-padding-free", action="store_true", help="leave out ours with padding_free")
    parser.add_argument(
        "--extra",
        nargs=3,
        action="append",
        metavar=("NAME", "SRC", "OPTIONS"),
        help="also time ours from another src/ directory (e.g. a checkout before a change) with these "
        "TrainConfig options (JSON); repeatable",
    )
    parser.add_argument(
        "--work-dir", default=str(DEFAULT_WORK), help="cache: aligned pairs, reference log-probs"
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    parser.add_argument("--opts", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        spec, opts = json.loads(args.spec), json.loads(args.opts)
        if opts.get("threads"):
            torch.set_num_threads(opts["threads"])
        torch.manual_seed(opts["seed"])
        result = {"ours": run_ours, "trl": run_trl, "equality": run_equality}[args.worker](spec, opts)
        result["rss_mb"] = _peak_rss_mb()
        if torch.cuda.is_available():
            result["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
        print(json.dumps(result))
        return
    if args.skip < 1 or args.big_skip < 1:
        parser.error("--skip and --big-skip must be >= 1 (the first step includes start-up)")

    opts = {
        "beta": args.beta,
        "lr": args.lr,
        "warmup": args.warmup,
        "batch_size": args.batch_size,
        "max_grad_norm": args.max_grad_norm,
        "max_length": args.max_length,
        "max_prompt_length": args.max_prompt_length,
        "seed": args.seed,
        "threads": args.threads,
    }
    if args.threads:
        torch.set_num_threads(args.threads)
    import transformers
    import trl

    device = _device()
    where = (
        f"{device} ({torch.get_num_threads()} threads)"
        if device.type == "cpu"
        else torch.cuda.get_device_name()
    )
    print(
        f"device: {where}; torch {torch.__version__}, transformers {transformers.__version__}, "
        f"trl {trl.__version__}; load average {os.getloadavg()[0]:.1f}"
    )
    print(
        f"DPO sigmoid, beta {args.beta}, RMSprop lr {args.lr}, warmup {args.warmup}, "
        f"{args.batch_size} pairs/step, clip {args.max_grad_norm}, max_length {args.max_length}, "
        f"{'bf16 autocast' if device.type == 'cuda' else 'float32'}"
    )
    started = time.perf_counter()
    specs = prepare(args)
    variants = _variants(args)

    for spec in specs:
        from transformers import AutoConfig, AutoModelForCausalLM

        config = AutoConfig.from_pretrained(spec["model"])
        with torch.device("meta"):
            params = sum(p.numel() for p in AutoModelForCausalLM.from_config(config).parameters())
        print(
            f"\n== {spec['name']}: {config.model_type} {config.num_hidden_layers} layers, "
            f"d={config.hidden_size}, vocab {config.vocab_size}, {params / 1e6:.1f}M params; "
            f"{spec['steps']} steps of {args.batch_size} pairs, {sum(spec['tokens'])} real tokens, "
            f"longest sequence {spec['longest']}"
        )
        if not args.no_equality:
            eq = _worker(
                "equality", spec, {**opts, "later": args.later if spec["name"] == "toy" else args.big_later}
            )
            print(
                f"equality: {eq['sequences']} sequences, {eq['token_mismatches']} differ in ids or "
                f"completion mask; TRL's own reference pass vs the file, batch 0: max abs diff "
                f"{eq['ref_pass_max_abs_diff']:.1e}"
            )
            for r in eq["rows"]:
                loss, norm = r["loss"], r["grad_norm"]
                print(
                    f"  step {r['step']:3d}: loss TRL {loss['trl']:.7f}, "
                    + ", ".join(
                        f"{k} {loss[k]:.7f} (diff {abs(loss[k] - loss['trl']):.1e})"
                        for k in loss
                        if k != "trl"
                    )
                )
                print(
                    f"            grad norm TRL {norm['trl']:.6f}, "
                    + ", ".join(
                        f"{k} {norm[k]:.6f} "
                        f"(rel diff {abs(norm[k] - norm['trl']) / max(norm['trl'], 1e-30):.1e})"
                        for k in norm
                        if k != "trl"
                    )
                )
        results: dict[str, list[dict[str, Any]]] = {v["name"]: [] for v in variants}
        for i in range(spec["runs"]):
            shift = i % len(variants)  # each round starts with another variant
            for v in variants[shift:] + variants[:shift]:
                result = _worker(v["kind"], {**spec, "options": v.get("options", {})}, opts, v.get("src"))
                result.update(_rates(result, spec))
                results[v["name"]].append(result)
                print(
                    f"  run {i + 1} {v['name']:22s} {result['steps_per_s']:7.2f} steps/s "
                    f"{result['tokens_per_s']:8.0f} tokens/s {result['cpu_ms_per_step']:8.1f} CPU ms/step, "
                    f"peak RSS {result['rss_train_mb']:5.0f} MB (process {result['rss_mb']:.0f} MB)",
                    flush=True,
                )
        print(
            f"{'median (min-max)':22s} {'steps/s':>20s} {'real tokens/s':>22s} "
            f"{'CPU ms/step':>22s} {'peak RSS MB':>12s}"
        )
        for name, rs in results.items():
            print(
                f"{name:22s} {_spread([r['steps_per_s'] for r in rs]):>20s} "
                f"{_spread([r['tokens_per_s'] for r in rs], '{:.0f}'):>22s} "
                f"{_spread([r['cpu_ms_per_step'] for r in rs], '{:.1f}'):>22s} "
                f"{statistics.median(r['rss_train_mb'] for r in rs):12.0f}"
            )
        trl_rs = results["trl"]
        for name, rs in results.items():
            if name == "trl":
                continue
            med = statistics.median(r["tokens_per_s"] for r in rs) / statistics.median(
                r["tokens_per_s"] for r in trl_rs
            )
            per_round = [o["tokens_per_s"] / t["tokens_per_s"] for o, t in zip(rs, trl_rs, strict=True)]
            cpu = statistics.median(r["cpu_ms_per_step"] for r in trl_rs) / statistics.median(
                r["cpu_ms_per_step"] for r in rs
            )
            print(
                f"{name} / TRL real tokens/s: {med:.2f}x (medians); per round "
                f"{', '.join(f'{r:.2f}' for r in per_round)}; CPU time per step {cpu:.2f}x"
            )
        names = list(results)
        first = {n: results[n][0]["losses"] for n in names}
        print(
            "first losses, "
            + " | ".join(names)
            + ": "
            + "; ".join(
                " | ".join(f"{first[n][k]:.6f}" for n in names)
                for k in range(min(args.show_losses, spec["steps"]))
            )
        )
        last = spec["steps"] - 1
        print(f"loss at step {last}: " + ", ".join(f"{n} {first[n][last]:.6f}" for n in names))
    print(f"\ntotal {time.perf_counter() - started:.0f} s; load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
