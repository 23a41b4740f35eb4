"""The training loop on a tiny GPT-NeoX: one policy forward per step and no reference model,
reference log-probs equal to sequence_logps, resume after a crash ending where an uninterrupted run
ends, BoNBoN moving the margin towards 1/(2 beta), non-finite losses caught."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from dataclasses import asdict, replace
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from transformers import AutoModelForCausalLM, GPTNeoXForCausalLM

from bonbon.batching import collate, tokenize_pairs
from bonbon.logprobs import sequence_logps
from bonbon.losses import LOSSES
from bonbon.reference import gather_reference_shards, write_reference_logps
from bonbon.theory import beta_star, target_margin
from bonbon.train import TrainConfig, config_from_dict, launch_command, sft, train

from helpers.tiny import hh_prompt, tokenize_one
from helpers.training import GOOD, MAX_LEN, MAX_PROMPT, Crash, N, cfg, params

torch.set_num_threads(2)


def test_reference_logps_equal_sequence_logps(world):
    ref = pd.read_parquet(world["ref"])
    pairs = pd.read_parquet(world["pairs"])
    assert len(ref) == len(pairs)
    assert ref.loc[7, ["chosen_ref_logp", "rejected_ref_logp"]].isna().all()
    model = AutoModelForCausalLM.from_pretrained(world["model"]).eval()
    tok = world["tokenizer"]
    for i in (0, 3, 12, 31):
        [example], _ = tokenize_pairs(pairs.iloc[[i]], tok, MAX_PROMPT, MAX_LEN)  # as training tokenizes
        for side in ("chosen", "rejected"):
            seq = example[side]
            b = collate([seq], tok.pad_token_id)  # alone: no padding at all
            with torch.no_grad():
                expected = sequence_logps(
                    model, b["input_ids"], b["attention_mask"], b["response_mask"]
                ).item()
            assert ref.loc[i, f"{side}_ref_logp"] == pytest.approx(expected, abs=1e-4)
            assert ref.loc[i, f"{side}_length"] == seq["response_length"]


def test_one_policy_forward_per_step_and_no_reference_model(world, tmp_path, monkeypatch):
    calls, loaded = [], []
    forward = GPTNeoXForCausalLM.forward
    monkeypatch.setattr(
        GPTNeoXForCausalLM, "forward",
        lambda self, *a, **k: (torch.is_grad_enabled() and calls.append(1)) or forward(self, *a, **k)
    )  # forwards with gradients: padding_free's check before step 0 runs two without
    from_pretrained = AutoModelForCausalLM.from_pretrained.__func__

    def recording(cls, path, *a, **k):
        loaded.append(Path(path))
        return from_pretrained(cls, path, *a, **k)

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", classmethod(recording))
    summary = train(world["model"], world["pairs"], world["ref"], tmp_path / "run", cfg(max_steps=3))
    assert len(calls) == 3  # one forward over chosen + rejected per step, none for SFT or reference
    assert loaded == [world["model"]]  # the policy only: reference log-probs come from the file
    assert summary["examples"] == 32 and summary["data"]["dropped_empty"] == 1
    metrics = pd.read_csv(tmp_path / "run" / "metrics.csv")
    assert metrics["step"].tolist() == [0, 1, 2]
    # step 0: policy == reference, so h = 0 and the IPO term is (1 / (2 beta))^2
    beta = beta_star(N)
    assert summary["beta"] == pytest.approx(beta)
    assert abs(metrics.loc[0, "margin"]) < 1e-4
    assert metrics.loc[0, "ipo"] == pytest.approx(target_margin(N) ** 2, rel=1e-4)
    expected_loss = 0.005 * metrics.loc[0, "sft"] + 0.995 * metrics.loc[0, "ipo"]
    assert metrics.loc[0, "loss"] == pytest.approx(expected_loss, rel=1e-5)
    assert metrics.loc[1, "margin"] != 0.0  # and training moves it


def test_resume_after_crash_matches_uninterrupted_run(world, tmp_path, monkeypatch):
    full, broken = tmp_path / "full", tmp_path / "broken"
    train(world["model"], world["pairs"], world["ref"], full, cfg(max_steps=6, checkpoint_every=1))
    assert sorted(p.name for p in (full / "checkpoints").iterdir()) == ["step-000004", "step-000005"]

    def crash_at_step_2(step, row):
        if step == 2:  # after the step-2 checkpoint, partway to the next one
            raise Crash

    with pytest.raises(Crash):
        train(
            world["model"],
            world["pairs"],
            world["ref"],
            broken,
            cfg(max_steps=6, checkpoint_every=2),
            callback=crash_at_step_2,
        )
    assert not (broken / "train_summary.json").exists() and not (broken / "config.json").exists()
    assert pd.read_csv(broken / "metrics.csv")["step"].tolist() == [0, 1, 2]
    (broken / "checkpoints" / ".tmp-step-000004").mkdir()  # a save killed half way: ignored

    calls = []
    forward = GPTNeoXForCausalLM.forward
    monkeypatch.setattr(
        GPTNeoXForCausalLM, "forward",
        lambda self, *a, **k: (torch.is_grad_enabled() and calls.append(1)) or forward(self, *a, **k)
    )  # forwards with gradients: padding_free's check before step 0 runs two without
    summary = train(
        world["model"], world["pairs"], world["ref"], broken, cfg(max_steps=6, checkpoint_every=2)
    )
    assert summary["resumed_from_step"] == 2 and summary["steps"] == 6
    assert len(calls) == 4  # steps 2..5 only
    assert pd.read_csv(broken / "metrics.csv")["step"].tolist() == [0, 1, 2, 3, 4, 5]
    assert sorted(p.name for p in (broken / "checkpoints").iterdir()) == ["step-000002", "step-000004"]

    start, a, b = params(world["model"]), params(full), params(broken)
    assert any((a[k] - start[k]).abs().max() > 1e-3 for k in a)  # training changed the model
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-5, rtol=0)


def test_bonbon_margin_moves_towards_target(world, tmp_path):
    summary = train(
        world["model"], world["pairs"], world["ref"], tmp_path / "run", cfg(max_steps=24, batch_size=8)
    )
    metrics = pd.read_csv(tmp_path / "run" / "metrics.csv")
    first, last = metrics.head(3), metrics.tail(5)
    target = target_margin(N)  # 5.5 = 1 / (2 beta*(4))
    assert summary["target_margin"] == pytest.approx(target)
    assert last["ipo"].mean() < 0.05 * first["ipo"].mean()
    assert abs(last["margin"].mean() - target) < 0.5 * abs(first["margin"].mean() - target)
    assert abs(last["margin"].mean() - target) < 0.1 * target  # and gets there: the IPO optimum
    assert last["reward_accuracy"].mean() > 0.9
    assert (metrics["grad_norm"] > 0).all() and (metrics["tokens_per_s"] > 0).all()


def test_non_finite_loss_raises_naming_step(world, tmp_path, monkeypatch):
    real = LOSSES["bonbon"]
    seen = []

    def nan_from_step_1(*args, **kwargs):
        losses, metrics = real(*args, **kwargs)
        seen.append(1)
        return (losses * float("nan") if len(seen) > 1 else losses), metrics

    monkeypatch.setitem(LOSSES, "bonbon", nan_from_step_1)  # the loop picks the loss from LOSSES
    with pytest.raises(FloatingPointError, match=r"at step 1 .*prompt_ids of the batch: \['p0"):
        train(world["model"], world["pairs"], world["ref"], tmp_path / "run", cfg(max_steps=3))


def test_reference_file_mismatch_is_an_error(world, tmp_path):
    ref = pd.read_parquet(world["ref"])
    short = tmp_path / "short.parquet"
    ref.drop(index=3).to_parquet(short)
    with pytest.raises(ValueError, match=r"short\.parquet: no reference log-prob for pair \('p003'"):
        train(world["model"], world["pairs"], short, tmp_path / "a", cfg())
    # computed with another max_length: lengths differ, caught before training
    with pytest.raises(ValueError, match="another tokenizer or max_length"):
        train(world["model"], world["pairs"], world["ref"], tmp_path / "b", cfg(max_length=30))


def test_sft_same_loop(world, tmp_path):
    pairs = pd.read_parquet(world["pairs"])
    texts = pd.DataFrame({"prompt": pairs["prompt"], "response": pairs["chosen"]})
    summary = sft(world["model"], texts, tmp_path / "sft", cfg(max_steps=15, batch_size=8))
    metrics = pd.read_csv(tmp_path / "sft" / "metrics.csv")
    assert summary["loss"] == "sft" and len(metrics) == 15
    assert metrics["loss"].tail(3).mean() < 0.9 * metrics["loss"].head(3).mean()
    assert AutoModelForCausalLM.from_pretrained(tmp_path / "sft") is not None


# ---------------------------------------------------------------------------------------- several processes


def torchrun(world, out: Path, options: TrainConfig, processes: int = 2) -> dict:
    """The module CLI that `accelerate launch` starts, under torch's own launcher with gloo on CPU:
    accelerate's launcher runs several processes only on accelerators, its DDP path is the same."""
    options_path = out.parent / f"{out.name}.yaml"
    options_path.write_text(yaml.safe_dump(asdict(options)))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes),
           "-m", "bonbon.train", "--policy", str(world["model"]), "--pairs", str(world["pairs"]),
           "--ref-logps", str(world["ref"]), "--out", str(out), "--config", str(options_path)]
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads((out / "train_summary.json").read_text())


def test_two_processes_equal_one_process_with_both_batches(world, tmp_path):
    """Data-parallel training is exact: 2 processes x 2 pairs compute the step of 1 process x 4 pairs,
    because process p takes the p-th slice of the step's pairs and DDP averages the gradients."""
    one = tmp_path / "one"
    train(world["model"], world["pairs"], world["ref"], one, cfg(batch_size=4, max_steps=3))
    two = torchrun(world, tmp_path / "two", cfg(batch_size=2, max_steps=3, checkpoint_every=2))
    assert two["steps_per_epoch"] == 32 // (2 * 2)  # both processes counted
    metrics = pd.read_csv(tmp_path / "two" / "metrics.csv")
    assert metrics["step"].tolist() == [0, 1, 2]  # written once, by the main process
    assert metrics["loss"].tolist() == pytest.approx(pd.read_csv(one / "metrics.csv")["loss"].tolist(),
                                                     rel=1e-4)
    a, b = params(one), params(tmp_path / "two")
    for k in a:
        torch.testing.assert_close(b[k], a[k], atol=2e-5, rtol=0)
    # the check can fail: each process training on the same pairs (no sharding) ends elsewhere
    same_pairs = tmp_path / "same"
    train(world["model"], world["pairs"], world["ref"], same_pairs, cfg(batch_size=2, max_steps=3))
    c = params(same_pairs)
    assert max((c[k] - a[k]).abs().max().item() for k in a) > 1e-3

    # resume with 2 processes: stop after step 2 (checkpoint at 1), go on to 3, end where `one` ended
    resumed = tmp_path / "resumed"
    torchrun(world, resumed, cfg(batch_size=2, max_steps=2, checkpoint_every=1))
    summary = torchrun(world, resumed, cfg(batch_size=2, max_steps=3, checkpoint_every=1))
    assert summary["resumed_from_step"] == 1
    assert pd.read_csv(resumed / "metrics.csv")["step"].tolist() == [0, 1, 2]
    b = params(resumed)
    for k in a:
        torch.testing.assert_close(b[k], a[k], atol=2e-5, rtol=0)


@pytest.mark.parametrize(("config", "kind"), [("fsdp.yaml", "use_fsdp"), ("ddp.yaml", "multi_gpu")])
def test_launch_command_parses_as_multi_gpu_run(tmp_path, config, kind):
    """The command a `gpu: 4` training job runs, read by accelerate's own launcher."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_multi_gpu_env

    accelerate_config = Path(__file__).parents[1] / "config" / "accelerate" / config
    cmd = launch_command(4, accelerate_config, "m", "p.parquet", "r.parquet", "out", "o.yaml")
    assert cmd[1:3] == ["-m", "accelerate.commands.launch"]
    args = launch_command_parser().parse_args(cmd[3:])
    validated = _validate_launch_command(args)
    args = validated[0] if isinstance(validated, tuple) else args
    assert args.num_processes == 4 and getattr(args, kind) and args.module
    assert args.training_script == "bonbon.train"
    assert args.training_script_args == ["--policy", "m", "--pairs", "p.parquet", "--out", "out",
                                         "--config", "o.yaml", "--ref-logps", "r.parquet"]
    env = prepare_multi_gpu_env(args)
    if kind == "use_fsdp":
        assert env["ACCELERATE_USE_FSDP"] == "true" and env["FSDP_VERSION"] == "2"
        assert env["FSDP_TRANSFORMER_CLS_TO_WRAP"] == "GPTNeoXLayer"
        assert env["FSDP_STATE_DICT_TYPE"] == "FULL_STATE_DICT"  # the final save gathers one state dict
    else:
        assert env.get("ACCELERATE_USE_FSDP", "false") == "false"


def test_checkpoints_deleted_after_training_only_when_asked(world, tmp_path):
    kept, deleted = tmp_path / "kept", tmp_path / "deleted"
    train(world["model"], world["pairs"], world["ref"], kept, cfg(max_steps=3, checkpoint_every=1))
    train(world["model"], world["pairs"], world["ref"], deleted,
          cfg(max_steps=3, checkpoint_every=1, checkpoints_after_training="delete"))
    assert sorted(p.name for p in (kept / "checkpoints").iterdir()) == ["step-000001", "step-000002"]
    assert not (deleted / "checkpoints").exists()
    assert (deleted / "train_summary.json").is_file()
    a, b = params(kept), params(deleted)
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=0, rtol=0)  # the final model is the same
    # a kept run can be extended from its last checkpoint: 2 more steps, not 5
    summary = train(world["model"], world["pairs"], world["ref"], kept, cfg(max_steps=5, checkpoint_every=1))
    assert summary["resumed_from_step"] == 2 and summary["steps"] == 5


def test_sharded_reference_logps_gather_to_the_unsharded_table(world, tmp_path):
    whole = pd.read_parquet(world["ref"])
    parts = []
    for k in range(3):
        path = tmp_path / f"{k + 1}-of-3.parquet"
        write_reference_logps(world["model"], world["pairs"], path, MAX_PROMPT, MAX_LEN, batch_size=16,
                              shard=(k, 3))
        parts.append(pd.read_parquet(path))
    assert [len(p) for p in parts] == [11, 11, 11]
    gathered = gather_reference_shards(parts)
    pd.testing.assert_frame_equal(gathered, whole, check_exact=False, atol=1e-4, rtol=0)  # float32 sums
    # the emptied pair stays put
    assert gathered.loc[7, ["chosen_ref_logp", "rejected_ref_logp"]].isna().all()
    with pytest.raises(ValueError, match="shard 2 of 3 has 10 rows, expected 11 of 32"):
        gather_reference_shards([parts[0], parts[1].iloc[1:], parts[2]])


def test_padding_free_auto_packs_where_the_model_supports_it(world, tmp_path, monkeypatch, caplog):
    """The default (auto) trains packed on a model that supports it and padded, with a warning, where the
    packed check fails; true raises there; the summary records what ran."""
    import bonbon.train.loop as loop

    def trained(name: str, padding_free: object) -> dict:
        summary = train(world["model"], world["pairs"], world["ref"], tmp_path / name,
                        cfg(max_steps=1, padding_free=padding_free))
        return summary["config"]["padding_free"]

    assert cfg().padding_free == "auto"
    assert trained("auto", "auto") is True
    assert trained("off", False) is False
    monkeypatch.setattr(loop, "padding_free_gap", lambda *a: 0.25)  # a model whose packed values differ
    with caplog.at_level("WARNING", logger="bonbon.train.loop"):
        assert trained("auto-unsupported", "auto") is False
    assert "padded rows, because packed log-probs differ from padded ones by 0.25" in caplog.text
    with pytest.raises(ValueError, match="training.padding_free is true but packed log-probs differ"):
        trained("forced", True)
    with pytest.raises(ValueError, match="padding_free must be true, false or 'auto', got 'yes'"):
        replace(cfg(), padding_free="yes")


def test_gradient_checkpointing_uses_the_current_api(world, tmp_path):
    """transformers 5.25 deprecates gradient_checkpointing_enable (gone in v6): training with activation
    checkpointing warns no FutureWarning (it would fail here on the old name, where the new one exists)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        summary = train(world["model"], world["pairs"], world["ref"], tmp_path / "run",
                        cfg(max_steps=1, gradient_checkpointing=True))
    assert summary["config"]["gradient_checkpointing"] is True


@pytest.mark.parametrize("loss", ["bonbon", "dpo"])
def test_padding_free_trains_like_padded_batches(world, tmp_path, loss):
    """training.padding_free: the same pairs per step, the same losses, validation values and model up to
    float32 rounding (the flag reaches the training step and the validation pass alike)."""
    extra = {"beta": 0.1} if loss == "dpo" else {}
    metrics, models = {}, {}
    for padding_free in (False, True):
        out = tmp_path / f"padding-free-{padding_free}"
        train(world["model"], world["pairs"], world["ref"], out,
              cfg(loss=loss, max_steps=4, padding_free=padding_free, validation_fraction=0.3, eval_every=2,
                  **extra))
        metrics[padding_free] = pd.read_csv(out / "metrics.csv")
        models[padding_free] = AutoModelForCausalLM.from_pretrained(out).eval()
    assert metrics[True]["val_loss"].notna().tolist() == [False, True, False, True]
    for column in ("loss", "sft", "margin", "grad_norm", "val_loss", "val_sft", "val_margin"):
        torch.testing.assert_close(torch.tensor(metrics[True][column].to_numpy()),
                                   torch.tensor(metrics[False][column].to_numpy()), rtol=1e-4, atol=1e-4,
                                   equal_nan=True)
    # the trained models compute the same log-probs (parameters without a gradient in exact arithmetic,
    # like the key bias, move by AdamW's normalised rounding noise: their values are not comparable)
    seqs = [tokenize_one(world["tokenizer"], hh_prompt(random.Random(i), 2), GOOD[i % 3], MAX_PROMPT, MAX_LEN)
            for i in range(6)]
    batch = collate(seqs, world["tokenizer"].pad_token_id)
    models["untrained"] = AutoModelForCausalLM.from_pretrained(world["model"]).eval()
    with torch.no_grad():
        logps = {k: sequence_logps(m, batch["input_ids"], batch["attention_mask"], batch["response_mask"])
                 for k, m in models.items()}
    torch.testing.assert_close(logps[True], logps[False], rtol=0, atol=1e-3)
    assert (logps[False] - logps["untrained"]).abs().max() > 1e-2  # training did move them


# ---------------------------------------------------------------------------------------- pins
# The plumbing of the loop, against values computed here: accumulation, data order, the SFT loss,
# the warmup schedule.


def test_gradient_accumulation_equals_one_larger_batch(world, tmp_path):
    """2 micro-batches of 4 pairs make the step of one batch of 8: the loss is divided by the number
    of micro-batches (same gradient norm) and the optimizer steps once per step (same parameters)."""
    big, accumulated = tmp_path / "big", tmp_path / "accumulated"
    train(world["model"], world["pairs"], world["ref"], big, cfg(batch_size=8, max_steps=2))
    train(world["model"], world["pairs"], world["ref"], accumulated,
          cfg(batch_size=4, gradient_accumulation_steps=2, max_steps=2))
    a, b = pd.read_csv(big / "metrics.csv"), pd.read_csv(accumulated / "metrics.csv")
    for column in ("loss", "margin", "grad_norm"):
        assert b[column].tolist() == pytest.approx(a[column].tolist(), rel=1e-5), column
    start, a, b = params(world["model"]), params(big), params(accumulated)
    assert max((a[k] - start[k]).abs().max().item() for k in a) > 1e-4  # the steps moved the model
    for k in a:
        torch.testing.assert_close(b[k], a[k], atol=2e-5, rtol=0)  # Adam: float noise on tiny gradients


def batches_seen(world, monkeypatch) -> list[list[str]]:
    """Records, per policy forward, the prompt ids of the chosen rows it was given (read back from the
    token ids: chosen sequences are unique in the world's pair file)."""
    examples, _ = tokenize_pairs(pd.read_parquet(world["pairs"]), world["tokenizer"], MAX_PROMPT, MAX_LEN)
    owner = {tuple(e["chosen"]["input_ids"]): e["prompt_id"] for e in examples}
    assert len(owner) == len(examples) == 32
    seen: list[list[str]] = []
    forward = GPTNeoXForCausalLM.forward

    def recording(self, *args, input_ids=None, attention_mask=None, **kwargs):
        rows = [tuple(ids[mask.bool()].tolist()) for ids, mask in zip(input_ids, attention_mask, strict=True)]
        seen.append([owner[r] for r in rows[: len(rows) // 2]])
        return forward(self, *args, input_ids=input_ids, attention_mask=attention_mask, **kwargs)

    monkeypatch.setattr(GPTNeoXForCausalLM, "forward", recording)
    return seen


def test_data_order_is_a_new_permutation_every_epoch_and_fixed_by_the_seed(world, tmp_path, monkeypatch):
    seen = batches_seen(world, monkeypatch)
    # 4 steps an epoch; padded rows, whose owners the recording reads back
    two_epochs = cfg(batch_size=8, max_steps=None, epochs=2, padding_free=False)
    train(world["model"], world["pairs"], world["ref"], tmp_path / "a", two_epochs)
    first = list(seen)
    assert len(first) == 8
    epochs = [sum(first[:4], []), sum(first[4:], [])]
    everything = sorted(owner for owner in epochs[0])
    assert len(set(everything)) == 32 and sorted(epochs[1]) == everything  # each epoch: every pair once
    assert epochs[0] != epochs[1]  # reshuffled
    seen.clear()
    train(world["model"], world["pairs"], world["ref"], tmp_path / "b", two_epochs)
    assert seen == first  # the same seed, the same order
    seen.clear()
    train(world["model"], world["pairs"], world["ref"], tmp_path / "c", replace(two_epochs, seed=1))
    assert sum(seen[:4], []) != epochs[0]


def test_sft_loss_is_the_per_token_mean_nll_of_the_micro_batch(world, tmp_path):
    """Step 0's logged loss is sum of the response tokens' NLL / their number over the whole batch (not
    a mean of per-sequence means), and the sft column the mean per-sequence summed NLL, both from a
    full forward pass of each unpadded sequence with the model before any update."""
    tok = world["tokenizer"]
    pairs = pd.read_parquet(world["pairs"]).head(6)
    responses = [" Sure.", " Fine.", " First clean the bike, then check the bread every day and water it.",
                 " Good question, water it.", " Happy to help: first clean the bike.", " No."]
    texts = pd.DataFrame({"prompt": pairs["prompt"], "response": responses})
    sft(world["model"], texts, tmp_path / "sft", cfg(max_steps=1, batch_size=6))
    row = pd.read_csv(tmp_path / "sft" / "metrics.csv").iloc[0]

    model = AutoModelForCausalLM.from_pretrained(world["model"]).eval()
    nll, tokens = [], []
    for prompt, response in zip(texts["prompt"], texts["response"], strict=True):
        prompt_ids = tok(prompt, add_special_tokens=False)["input_ids"][-MAX_PROMPT:]  # cut from the left
        response_ids = (tok(response, add_special_tokens=False)["input_ids"] + [tok.eos_token_id])
        response_ids = response_ids[: MAX_LEN - len(prompt_ids)]
        ids = torch.tensor([prompt_ids + response_ids])
        with torch.no_grad():
            logps = model(input_ids=ids).logits[0].double().log_softmax(-1)
        steps = torch.arange(len(response_ids)) + len(prompt_ids) - 1
        nll.append(-logps[steps, torch.tensor(response_ids)].sum().item())
        tokens.append(len(response_ids))
    assert len(set(tokens)) >= 4  # per-token and per-sequence means differ
    assert row["loss"] == pytest.approx(sum(nll) / sum(tokens), rel=1e-5)
    assert row["loss"] != pytest.approx(sum(n / t for n, t in zip(nll, tokens, strict=True)) / 6, rel=1e-3)
    assert row["sft"] == pytest.approx(sum(nll) / 6, rel=1e-5)


def test_warmup_is_linear_from_the_first_step(world, tmp_path):
    """lr at step s is lr * min(1, (s + 1) / (warmup + 1)): nonzero at step 0, in the metrics and in the
    update (AdamW's first step moves each weight by lr * g / (|g| + eps), so by at most lr)."""
    lr, warmup = 1e-3, 3
    train(world["model"], world["pairs"], world["ref"], tmp_path / "a",
          cfg(learning_rate=lr, warmup_steps=warmup, max_steps=5))
    logged = pd.read_csv(tmp_path / "a" / "metrics.csv")["lr"].tolist()
    assert logged == pytest.approx([lr * (s + 1) / (warmup + 1) for s in range(3)] + [lr, lr], rel=1e-12)
    train(world["model"], world["pairs"], world["ref"], tmp_path / "b",
          cfg(learning_rate=lr, warmup_steps=warmup, max_steps=1))
    start, after = params(world["model"]), params(tmp_path / "b")
    moved = max((after[k] - start[k]).abs().max().item() for k in start)
    assert moved == pytest.approx(lr / (warmup + 1), rel=1e-3)


def test_config_from_dict_takes_defaults_and_bounds_from_the_schema():
    from dataclasses import asdict

    from bonbon.config import load_schema

    properties = load_schema()["definitions"]["training"]["properties"]
    defaults = {k: v["default"] for k, v in properties.items() if k != "lora"}
    # a block of settings: each key's default (a run's partial block then merges into it key by key)
    defaults["lora"] = {k: v["default"] for k, v in properties["lora"]["properties"].items()}
    options = config_from_dict({"loss": "ipo", "beta": 0.1, "batch_size": 3})
    assert options.batch_size == 3 and options.beta == 0.1
    assert {k: asdict(options)[k] for k in defaults if k != "batch_size"} == {
        k: v for k, v in defaults.items() if k != "batch_size"}
    assert options.learning_rate == 5e-7 and options.warmup_steps == 150  # the paper's, stated in the schema
    with pytest.raises(ValueError, match=r"config key training.batch_size: 0 is less than the minimum of 1"):
        config_from_dict({"loss": "ipo", "beta": 0.1, "batch_size": 0})
    with pytest.raises(ValueError, match=r"config key training: Additional properties.*'bach_size'"):
        config_from_dict({"loss": "ipo", "beta": 0.1, "bach_size": 8})
    with pytest.raises(ValueError, match=r"config key training.optimizer: 'sgd' is not one of"):
        config_from_dict({"loss": "ipo", "beta": 0.1, "optimizer": "sgd"})
    # what the schema cannot say of one run
    with pytest.raises(ValueError, match=r"loss must be one of \['bonbon', 'dpo', 'ipo', 'sft'\], got 'kto'"):
        config_from_dict({"loss": "kto", "beta": 0.1})
    with pytest.raises(ValueError, match="loss 'dpo' needs beta"):
        config_from_dict({"loss": "dpo"})
    with pytest.raises(ValueError, match="loss 'bonbon' needs alpha"):
        config_from_dict({"loss": "bonbon", "beta": 0.1})
    assert config_from_dict({"loss": "sft"}).beta is None


def test_changed_run_sets_its_old_checkpoints_aside_and_trains_afresh(world, tmp_path, monkeypatch):
    """A rerun with other result-affecting settings never resumes from (or mixes with) the old
    checkpoints: their directory is moved aside (or deleted) and the run equals a fresh one. The same
    settings, or only a changed log interval, still resume."""
    out = tmp_path / "run"

    def crash_at_step_2(step, row):
        if step == 2:
            raise Crash

    with pytest.raises(Crash):
        train(world["model"], world["pairs"], world["ref"], out, cfg(max_steps=4, checkpoint_every=2),
              callback=crash_at_step_2)
    changed = cfg(max_steps=4, checkpoint_every=2, learning_rate=5e-4)
    summary = train(world["model"], world["pairs"], world["ref"], out, changed)
    assert summary["resumed_from_step"] == 0
    (stale,) = tmp_path.glob("run.stale-*")
    assert (stale / "checkpoints" / "step-000002").is_dir() and not (stale / "train_summary.json").exists()
    assert pd.read_csv(out / "metrics.csv")["step"].tolist() == [0, 1, 2, 3]
    fresh = tmp_path / "fresh"
    train(world["model"], world["pairs"], world["ref"], fresh, cfg(max_steps=4, learning_rate=5e-4))
    a, b = params(fresh), params(out)
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=0)

    # the finished run's step-2 checkpoint, with the same settings and another log interval: resumes
    summary = train(world["model"], world["pairs"], world["ref"], out, replace(changed, log_every=1))
    assert summary["resumed_from_step"] == 2 and len(list(tmp_path.glob("run.stale-*"))) == 1
    # on_config_change: delete leaves nothing behind
    summary = train(world["model"], world["pairs"], world["ref"], out,
                    replace(changed, learning_rate=2e-4, on_config_change="delete"))
    assert summary["resumed_from_step"] == 0 and len(list(tmp_path.glob("run.stale-*"))) == 1
    with pytest.raises(ValueError, match=r"config key training.on_config_change: 'keep' is not one of"):
        cfg(on_config_change="keep")


def test_a_checkpoint_of_another_pair_count_or_setting_is_not_resumed():
    """What keeps a checkpoint from being resumed: the number of examples (the pair file changed size) and a
    result-affecting option, named with old -> new; a runtime option (eval_every, max_steps) does not.
    Pins the example count left out of the check and a runtime key counted as a change."""
    from dataclasses import asdict

    from bonbon.train import RESUMABLE_CHANGES
    from bonbon.train.checkpoints import check_resumable

    options = cfg()
    state = {"config": asdict(options), "examples": 28}
    assert check_resumable(state, options, 28) == ""
    assert check_resumable(state, options, 27) == "examples: 28 -> 27"
    other = cfg(learning_rate=2e-3, eval_every=7, max_steps=9)
    assert check_resumable(state, other, 28) == "learning_rate: 0.001 -> 0.002"
    assert check_resumable(state, other, 30) == "learning_rate: 0.001 -> 0.002, examples: 28 -> 30"
    assert {"eval_every", "max_steps", "snapshot_every"} <= set(RESUMABLE_CHANGES)
    assert not ({"learning_rate", "loss", "beta", "alpha", "seed", "batch_size", "lora"}
                & set(RESUMABLE_CHANGES))
