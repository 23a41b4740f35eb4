"""DPO through bonbon.train equals TRL's DPOTrainer (loss_type="sigmoid") on the same tokens: the same
loss and gradient norm on the same batch, at step 0 and later, padded and padding-free, and the same
losses step by step through both training loops. The alignment checked here is the one
perf/bench_vs_trl.py times; skipped where TRL (the ``bench`` extra) is not installed."""

from __future__ import annotations

import argparse
import importlib.util
import random
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

try:
    import trl  # noqa: F401
except ImportError:
    pytest.skip(
        "TRL is not installed (pip install -e '.[bench]'); CI does not install it", allow_module_level=True
    )

from bonbon.batching import tokenize_pairs
from bonbon.reference import write_reference_logps

from helpers.tiny import hh_prompt, hh_response, save_tiny_policy

torch.set_num_threads(2)
REPO = Path(__file__).resolve().parent.parent
MAX_PROMPT, MAX_LEN, BATCH, STEPS = 200, 256, 4, 6


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_vs_trl", REPO / "perf" / "bench_vs_trl.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_vs_trl"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench():
    return load_bench()


@pytest.fixture(scope="module")
def world(tmp_path_factory, bench):
    """A tiny GPT-NeoX with its tokenizer, 24 pairs (every response finished), their reference log-probs,
    and the spec the benchmark's workers take."""
    root = tmp_path_factory.mktemp("vs_trl")
    model_dir = root / "policy"
    tokenizer = save_tiny_policy(model_dir, max_position_embeddings=512, initializer_range=0.2)
    rng = random.Random(3)
    rows = [
        {
            "prompt_id": f"p{i:03d}",
            "prompt": hh_prompt(rng, rng.randint(1, 3)),
            "chosen": hh_response(rng),
            "rejected": hh_response(rng),
            "chosen_idx": 0,
            "rejected_idx": 1,
            "chosen_finished": True,
            "rejected_finished": True,
            "n": 2,
        }
        for i in range(BATCH * STEPS)
    ]
    pairs, ref = root / "pairs.parquet", root / "ref.parquet"
    pd.DataFrame(rows).to_parquet(pairs)
    write_reference_logps(model_dir, pairs, ref, MAX_PROMPT, MAX_LEN, batch_size=8)
    args = argparse.Namespace(max_prompt_length=MAX_PROMPT, max_length=MAX_LEN, seed=0, batch_size=BATCH)
    spec = {
        "name": "tiny",
        "model": str(model_dir),
        "pairs": str(pairs),
        "ref": str(ref),
        "steps": STEPS,
        "skip": 1,
        "runs": 1,
    }
    spec.update(bench._steps_and_tokens(spec, args))
    opts = {
        "beta": 0.1,
        "lr": 3e-3,
        "warmup": 2,
        "batch_size": BATCH,
        "max_grad_norm": 10.0,
        "max_length": MAX_LEN,
        "max_prompt_length": MAX_PROMPT,
        "seed": 0,
        "later": 4,
    }
    return {"spec": spec, "opts": opts, "tokenizer": tokenizer, "pairs": pairs}


def test_same_tokens_loss_and_gradient_norm(world, bench):
    eq = bench.run_equality(world["spec"], world["opts"])
    assert eq["token_mismatches"] == 0
    assert eq["ref_pass_max_abs_diff"] < 1e-4  # TRL's own reference pass agrees with ours
    assert [r["step"] for r in eq["rows"]] == [0, 4]
    for r in eq["rows"]:
        loss, norm = r["loss"], r["grad_norm"]
        for ours in ("ours", "ours padding_free"):
            assert loss[ours] == pytest.approx(loss["trl"], abs=2e-6), (r["step"], ours, loss)
            assert norm[ours] == pytest.approx(norm["trl"], rel=2e-5), (r["step"], ours, norm)
    later = eq["rows"][1]
    assert abs(later["loss"]["trl"] - 0.6931472) > 1e-2  # a trained policy, not the reference again
    assert later["grad_norm"]["trl"] != pytest.approx(eq["rows"][0]["grad_norm"]["trl"], rel=1e-3)


@pytest.mark.parametrize("padding_free", [False, True])
def test_training_loops_give_the_same_losses(world, bench, padding_free):
    """bonbon.train and DPOTrainer, same schedule, optimizer, clipping and batches: the same loss each
    step."""
    spec = {**world["spec"], "options": {"padding_free": padding_free}}
    ours = bench.run_ours(spec, world["opts"])
    theirs = bench.run_trl(spec, world["opts"])
    assert len(ours["losses"]) == len(theirs["losses"]) == STEPS
    assert ours["losses"][0] == pytest.approx(0.6931472, abs=1e-5)  # policy == reference at step 0
    assert abs(ours["losses"][-1] - ours["losses"][0]) > 1e-2  # the steps do train
    assert ours["losses"] == pytest.approx(theirs["losses"], abs=1e-5)


def test_trl_appends_eos_where_the_workflow_does_not(world):
    """The one tokenization difference: a response cut off at max_new_tokens (finished=False) gets no
    EOS here, TRL appends one to every response; the benchmark marks every response finished."""
    frame = pd.read_parquet(world["pairs"]).head(1)
    tok = world["tokenizer"]
    finished, _ = tokenize_pairs(frame, tok, MAX_PROMPT, MAX_LEN)
    cut, _ = tokenize_pairs(frame.assign(chosen_finished=False), tok, MAX_PROMPT, MAX_LEN)
    with_eos, without = finished[0]["chosen"]["input_ids"], cut[0]["chosen"]["input_ids"]
    assert with_eos[-1] == tok.eos_token_id and without[-1] != tok.eos_token_id
    assert with_eos[:-1] == without
    trl_ids = tok(frame.loc[0, "prompt"] + frame.loc[0, "chosen"] + tok.eos_token)["input_ids"]
    assert trl_ids == with_eos  # what TRL tokenizes for the same row
