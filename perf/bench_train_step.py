"""Time one BoNBoN training step: this implementation against a re-creation of the reference one.

* ours: ONE policy forward over the [2B, T] chosen+rejected batch (``bonbon.logprobs.sequence_logps``),
  reference log-probs precomputed (constants here), the SFT term reusing the chosen log-probs.
* reference (gl-ybnbxb/BoNBoN ``trainers.py``, DPO-code style): policy forward over chosen+rejected
  (``logits.to(float32)``, full ``log_softmax``), a reference-model forward over chosen+rejected
  under no_grad at EVERY step, and a second policy forward over the chosen rows for the SFT term.

Both run on the same model weights and batch, alternating step by step so that load on a shared
machine hits both alike; the median of ``--steps`` steps after ``--warmup`` is reported. Also timed:
the one-off reference pass ours moves out of training (an inference-mode forward over the same batch),
to give the per-step cost of a single-epoch run with that pass spread over its steps.

    python perf/bench_train_step.py [--model-dir DIR] [--batch-size 8] [--length 128] [--steps 10]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

from bonbon.logprobs import sequence_logps
from bonbon.losses import bonbon_loss
from bonbon.theory import beta_star

ALPHA, BETA, LR, MAX_GRAD_NORM = 0.005, beta_star(8), 5e-7, 10.0


def build_model(model_dir: str | None, vocab: int) -> torch.nn.Module:
    from transformers import AutoModelForCausalLM, GPTNeoXConfig, GPTNeoXForCausalLM

    if model_dir:
        return AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    torch.manual_seed(0)
    config = GPTNeoXConfig(  # the toy Pythia: d=128, 2 layers
        vocab_size=vocab,
        hidden_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=512,
        max_position_embeddings=2048,
        rotary_pct=0.25,
        use_parallel_residual=True,
        tie_word_embeddings=False,
    )
    return GPTNeoXForCausalLM(config)


def make_batch(batch_size: int, length: int, vocab: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """2B right-padded rows (B chosen, then B rejected of the same prompts), lengths in [length/2, length]."""
    g = torch.Generator().manual_seed(seed)
    rows = 2 * batch_size
    prompt_len = torch.randint(length // 8, length // 4 + 1, (batch_size,), generator=g).repeat(2)
    total = torch.randint(length // 2, length + 1, (rows,), generator=g)
    ids = torch.randint(2, vocab, (rows, length), generator=g)
    ids[batch_size:, :] = torch.where(  # rejected rows share their pair's prompt
        torch.arange(length) < prompt_len[batch_size:, None], ids[:batch_size], ids[batch_size:]
    )
    pos = torch.arange(length).expand(rows, length)
    attention = (pos < total[:, None]).long()
    response = (attention.bool() & (pos >= prompt_len[:, None])).long()
    ids = ids.masked_fill(attention == 0, 0)
    return {"input_ids": ids, "attention_mask": attention, "response_mask": response}


# ------------------------------------------------------------------------------------------ ours


def our_step(policy, optimizer, batch, ref_c, ref_r) -> float:
    b = ref_c.shape[0]
    logps = sequence_logps(policy, batch["input_ids"], batch["attention_mask"], batch["response_mask"])
    losses, _ = bonbon_loss(logps[:b], logps[b:], ref_c, ref_r, beta=BETA, alpha=ALPHA)
    loss = losses.mean()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(policy.parameters(), MAX_GRAD_NORM)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.item()


# ----------------------------------------------------------------------- reference re-creation


def _get_batch_logps(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    # as in the reference: shift, full log_softmax over the vocabulary, gather, sum
    labels = labels[:, 1:].clone()
    logits = logits[:, :-1, :]
    loss_mask = labels != -100
    labels[labels == -100] = 0
    per_token = torch.gather(logits.log_softmax(-1), dim=2, index=labels.unsqueeze(2)).squeeze(2)
    return (per_token * loss_mask).sum(-1)


def _concatenated_forward(model, ids, attention, labels, b):
    logits = model(ids, attention_mask=attention).logits.to(torch.float32)
    logps = _get_batch_logps(logits, labels)
    return logps[:b], logps[b:]


def reference_step(policy, reference, optimizer, scheduler, batch, labels) -> float:
    b = batch["input_ids"].shape[0] // 2
    ids, att = batch["input_ids"], batch["attention_mask"]
    pc, pr = _concatenated_forward(policy, ids, att, labels, b)
    with torch.no_grad():
        rc, rr = _concatenated_forward(reference, ids, att, labels, b)
    h = (pc - pr) - (rc - rr)
    ipo = (h - 1 / (2 * BETA)) ** 2
    # SFT term: a second policy forward over the chosen rows
    chosen_logits = policy(ids[:b], attention_mask=att[:b]).logits.to(torch.float32)
    sft = -_get_batch_logps(chosen_logits, labels[:b])
    loss = (ALPHA * sft + (1 - ALPHA) * ipo).mean()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(policy.parameters(), MAX_GRAD_NORM)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad()
    return loss.item()


# ------------------------------------------------------------------------------------------ main


def timed(fn, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description="time one BoNBoN training step, ours vs the reference")
    parser.add_argument("--model-dir", help="HF model directory (default: a small GPT-NeoX, d=128, 2 layers)")
    parser.add_argument("--batch-size", type=int, default=8, help="pairs per step")
    parser.add_argument("--length", type=int, default=128, help="padded sequence length")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per implementation")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per implementation first")
    parser.add_argument("--vocab", type=int, default=800, help="vocabulary of the default model")
    args = parser.parse_args()

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    base = build_model(args.model_dir, args.vocab).to(device)
    vocab = base.config.vocab_size
    batch = {k: v.to(device) for k, v in make_batch(args.batch_size, args.length, vocab).items()}
    labels = batch["input_ids"].masked_fill(~(batch["response_mask"].bool()), -100)

    ours = copy.deepcopy(base).train()
    ours_opt = torch.optim.RMSprop(ours.parameters(), lr=LR)
    theirs, reference = copy.deepcopy(base).train(), copy.deepcopy(base).eval()
    theirs_opt = torch.optim.RMSprop(theirs.parameters(), lr=LR)
    theirs_sched = torch.optim.lr_scheduler.LambdaLR(theirs_opt, lambda s: min(1.0, (s + 1) / 151))
    del base

    # the one-off reference pass of ours (done before training, once per pair)
    def ref_pass():
        with torch.inference_mode():
            return sequence_logps(
                reference, batch["input_ids"], batch["attention_mask"], batch["response_mask"]
            )

    ref = ref_pass().clone()
    ref_c, ref_r = ref[: args.batch_size], ref[args.batch_size :]

    # same objective: at equal weights (policy == reference) both steps compute the same loss
    with torch.no_grad():
        logps = sequence_logps(ours, batch["input_ids"], batch["attention_mask"], batch["response_mask"])
        b = args.batch_size
        loss_ours = bonbon_loss(logps[:b], logps[b:], ref_c, ref_r, beta=BETA, alpha=ALPHA)[0].mean()
        pc, pr = _concatenated_forward(theirs, batch["input_ids"], batch["attention_mask"], labels, b)
        sft = -_get_batch_logps(
            theirs(batch["input_ids"][:b], attention_mask=batch["attention_mask"][:b]).logits, labels[:b]
        )
        loss_theirs = (ALPHA * sft + (1 - ALPHA) * ((pc - pr) - (ref_c - ref_r) - 1 / (2 * BETA)) ** 2).mean()
    t_ours, t_ref, t_pass = [], [], []
    for i in range(args.warmup + args.steps):
        a = timed(lambda: our_step(ours, ours_opt, batch, ref_c, ref_r), device)
        b = timed(lambda: reference_step(theirs, reference, theirs_opt, theirs_sched, batch, labels), device)
        c = timed(ref_pass, device)
        if i >= args.warmup:
            t_ours.append(a)
            t_ref.append(b)
            t_pass.append(c)

    med_ours, med_ref, med_pass = (statistics.median(t) for t in (t_ours, t_ref, t_pass))
    tokens = int(batch["attention_mask"].sum())
    params = sum(p.numel() for p in ours.parameters())
    print(
        f"device: {device} ({torch.get_num_threads()} threads)"
        if device.type == "cpu"
        else f"device: {device}"
    )
    print(f"model: {args.model_dir or 'GPT-NeoX d=128 x2'}, {params / 1e6:.2f}M params, vocab {vocab}")
    print(
        f"batch: {args.batch_size} pairs = {2 * args.batch_size} rows x {args.length} tokens ({tokens} real)"
    )
    print(f"step-0 loss, ours / reference-style: {loss_ours.item():.4f} / {loss_theirs.item():.4f}")
    print(f"reference-style step (3 forwards: policy 2B, reference 2B, policy B): {1e3 * med_ref:8.1f} ms")
    print(f"ours (1 policy forward over 2B, precomputed reference):          {1e3 * med_ours:8.1f} ms")
    print(f"speed-up per training step:                                       {med_ref / med_ours:8.2f}x")
    print(f"one-off reference pass of the same batch (inference mode):       {1e3 * med_pass:8.1f} ms")
    print(
        "speed-up with that pass charged to a single epoch:                "
        f"{med_ref / (med_ours + med_pass):8.2f}x"
    )


if __name__ == "__main__":
    main()
