"""Checkpoint trajectories and held-out validation: snapshots are the weights a shorter run ends
with, sampling one equals sampling that final model, validation metrics equal the loss recomputed by
hand on the held-out pairs, and the checkpoint steps the evaluation asks for."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from bonbon.batching import collate_pairs, pad_id, tokenize_pairs
from bonbon.config import ConfigError
from bonbon.generate import generate_samples
from bonbon.logprobs import sequence_logps
from bonbon.models import load_policy
from bonbon.runs import check_checkpoints, checkpoint_steps, expand_runs
from bonbon.sampling import SamplingConfig
from bonbon.tables import PAIR_TEXT_COLUMNS, read_table
from bonbon.theory import beta_star
from bonbon.train import attach_reference, split_validation, train

from helpers.training import cfg, params

torch.set_num_threads(2)  # as test_train, whose world this module trains on


def test_snapshot_is_the_final_model_of_the_shorter_run_and_samples_alike(world, tmp_path):
    long, short = tmp_path / "long", tmp_path / "short"
    summary = train(world["model"], world["pairs"], world["ref"], long, cfg(max_steps=4, snapshot_every=2))
    train(world["model"], world["pairs"], world["ref"], short, cfg(max_steps=2))
    assert summary["snapshot_steps"] == [2]  # step 4 is the final model, not a snapshot
    snapshot = long / "snapshots" / "step-000002"
    a, b = params(snapshot), params(short)
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=0, rtol=0)
    prompts = (read_table(world["pairs"], PAIR_TEXT_COLUMNS).drop_duplicates("prompt_id")
               [["prompt_id", "prompt"]].head(6))
    sampling = SamplingConfig(n=2, max_new_tokens=8, max_prompt_length=24, seed=3)
    tables = [generate_samples(*load_policy(str(path)), prompts, sampling)[0] for path in (snapshot, short)]
    pd.testing.assert_frame_equal(tables[0], tables[1])
    base = params(world["model"])
    assert any(not torch.equal(a[k], base[k]) for k in a)  # training moved the weights


def test_snapshots_kept_when_checkpoints_are_deleted(world, tmp_path):
    out = tmp_path / "run"
    summary = train(world["model"], world["pairs"], world["ref"], out,
                    cfg(max_steps=3, checkpoint_every=1, checkpoints_after_training="delete"))
    assert not (out / "checkpoints").exists()
    assert summary["snapshot_steps"] == [1, 2]  # snapshot_every null: at every checkpoint
    assert json.loads((out / "train_summary.json").read_text())["snapshot_steps"] == [1, 2]


def test_validation_split_is_by_prompt_and_disjoint():
    examples = [{"prompt_id": f"p{i:04d}", "k": i} for i in range(2000)]
    train_part, validation = split_validation(examples, 0.2)
    assert not {e["prompt_id"] for e in train_part} & {e["prompt_id"] for e in validation}
    assert len(train_part) + len(validation) == 2000
    assert abs(len(validation) / 2000 - 0.2) < 4 * (0.2 * 0.8 / 2000) ** 0.5  # binomial, 4 SD
    assert split_validation(examples, 0.2)[1] == validation  # deterministic, no seed
    assert split_validation(examples, 0.0) == (examples, [])
    with pytest.raises(ValueError, match="validation_fraction"):
        split_validation(examples[:1], 0.5)


def test_validation_metrics_equal_the_loss_recomputed_on_held_out_pairs(world, tmp_path):
    out = tmp_path / "run"
    options = cfg(max_steps=4, loss="ipo", validation_fraction=0.3, eval_every=2)
    summary = train(world["model"], world["pairs"], world["ref"], out, options)
    metrics = pd.read_csv(out / "metrics.csv")
    assert metrics["val_loss"].notna().tolist() == [False, True, False, True]  # steps 2 and 4
    # recompute by hand with the final model on the pairs the split holds out
    examples, _ = tokenize_pairs(read_table(world["pairs"], PAIR_TEXT_COLUMNS), world["tokenizer"],
                                 options.max_prompt_length, options.max_length)
    attach_reference(examples, world["ref"])
    _, validation = split_validation(examples, 0.3)
    assert summary["validation_pairs"] == len(validation) > 0
    model = load_policy(str(out))[0]
    batch = collate_pairs(validation, pad_id(world["tokenizer"]))
    with torch.no_grad():
        logps = sequence_logps(model, batch["input_ids"], batch["attention_mask"], batch["response_mask"])
    k = len(validation)
    h = (logps[:k] - batch["chosen_ref_logp"]) - (logps[k:] - batch["rejected_ref_logp"])
    last = metrics.iloc[-1]
    assert last["val_margin"] == pytest.approx(float(h.mean()), abs=1e-4)
    assert last["val_loss"] == pytest.approx(float(((h - 1 / (2 * beta_star(4))) ** 2).mean()), rel=1e-5)
    assert last["val_sft"] == pytest.approx(float(-logps[:k].mean()), rel=1e-5)
    assert last["val_reward_accuracy"] == pytest.approx(float((h > 0).float().mean()))
    # the held-out pairs never trained: the train rows of the step count fewer examples
    assert summary["examples"] == len(examples) - len(validation)


def test_checkpoint_steps_resolution():
    spec = {"every": 20, "steps": [50, 100], "fractions": [0.5]}
    # a 60-step run with snapshots every 10: every 20 -> 20, 40; step 50; half -> 30; 100 is past the end
    assert checkpoint_steps(spec, 60, [10, 20, 30, 40, 50]) == [20, 30, 40, 50]
    assert checkpoint_steps({"every": None, "steps": [], "fractions": []}, 60, [20, 40]) == []
    with pytest.raises(ValueError, match="evaluation.checkpoints"):
        checkpoint_steps({"steps": [30]}, 60, [20, 40])
    # the up-front check: a step between snapshots is a config error, before any job
    runs = {"r": {"training": {"checkpoint_every": 20}}}
    config = {"evaluation": {"checkpoints": {"every": 30, "steps": [], "fractions": []}}}
    with pytest.raises(ConfigError, match="evaluation.checkpoints.every"):
        check_checkpoints(config, runs)
    config["evaluation"]["checkpoints"]["every"] = 40
    check_checkpoints(config, runs)
    runs["r"]["training"]["snapshot_every"] = 0
    with pytest.raises(ConfigError, match="snapshot_every: 0"):
        check_checkpoints(config, runs)



def test_a_run_entry_can_replace_the_evaluated_checkpoints():
    from helpers.configs import base

    config = base(runs=[{"loss": "ipo", "beta": ["auto"], "n": [8]},
                        {"loss": "ipo", "beta": ["auto"], "n": [2], "checkpoints": {}}],
                  evaluation={"checkpoints": {"steps": [8, 32]}},
                  training={"checkpoint_every": 20, "snapshot_every": 8, "max_length": 192})
    runs = expand_runs(config)
    assert runs["toy-n8-ipo-betaauto"]["checkpoints"]["steps"] == [8, 32]  # the evaluation block's
    assert runs["toy-n2-ipo-betaauto"]["checkpoints"] == {"every": None, "steps": [], "fractions": []}
    check_checkpoints(config, runs)
    config["evaluation"]["checkpoints"]["steps"] = [12]  # not on the snapshot grid of 8
    with pytest.raises(ConfigError, match="evaluation.checkpoints.steps: 12"):
        check_checkpoints(config, expand_runs(config))


def test_validation_on_a_last_step_off_the_interval_and_no_snapshots_with_snapshot_every_0(world, tmp_path):
    """5 steps, eval_every 2: validation after steps 2, 4 and the last, 5; snapshot_every 0 writes no
    snapshot although checkpoints are written every 2 steps. Pins the final-step validation dropped,
    validation at step % eval_every == 1, and snapshot_every 0 read as 'every checkpoint'."""
    out = tmp_path / "run"
    summary = train(world["model"], world["pairs"], world["ref"], out,
                    cfg(max_steps=5, loss="ipo", validation_fraction=0.3, eval_every=2, snapshot_every=0,
                        checkpoint_every=2))
    metrics = pd.read_csv(out / "metrics.csv")
    assert metrics["step"].tolist() == [0, 1, 2, 3, 4]
    assert metrics["val_loss"].notna().tolist() == [False, True, False, True, True]
    assert summary["snapshot_steps"] == []
    assert not any((out / "snapshots").glob("step-*")) if (out / "snapshots").exists() else True
    assert sorted(p.name for p in (out / "checkpoints").glob("step-*")) == ["step-000002", "step-000004"]
