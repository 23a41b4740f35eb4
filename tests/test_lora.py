"""LoRA training through peft on the tiny GPT-NeoX of test_train: only the adapters train (counted
exactly), the loss goes down, a resume after a crash ends where an uninterrupted run ends, and the
saved model (final and snapshots) is the merged policy W + B @ A * alpha / r, loaded with plain
from_pretrained, not the base. Trackers: tensorboard event files read back equal metrics.csv."""

from __future__ import annotations

import logging
import math
from dataclasses import asdict
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, GPTNeoXForCausalLM

from bonbon.tables import METRIC_COLUMNS
from bonbon.theory import beta_star
from bonbon.train import LoraOptions, TrainConfig, config_from_dict, train
from bonbon.train.lora import ADAPTER_DIR

from helpers.training import Crash, cfg, params

torch.set_num_threads(2)  # as test_train, whose world this module trains on

HIDDEN, INTERMEDIATE, LAYERS = 32, 64, 2  # the world's model
LORA = {"enabled": True, "r": 4, "alpha": 8.0, "dropout": 0.0}


def lora_cfg(**overrides) -> TrainConfig:
    return cfg(lora={**LORA, **overrides.pop("lora", {})}, **overrides)


def adapter_count(r: int, targets: dict[str, tuple[int, int]]) -> int:
    """r * (in + out) per adapted Linear: A is r x in, B is out x r."""
    return LAYERS * sum(r * (fan_in + fan_out) for fan_in, fan_out in targets.values())


ATTENTION = {"query_key_value": (HIDDEN, 3 * HIDDEN), "dense": (HIDDEN, HIDDEN)}
MLP = {"dense_h_to_4h": (HIDDEN, INTERMEDIATE), "dense_4h_to_h": (INTERMEDIATE, HIDDEN)}


def merged_expected(base: dict[str, torch.Tensor], adapter_dir: Path,
                    scale: float) -> dict[str, torch.Tensor]:
    """The base weights plus B @ A * scale for every adapter in adapter_dir, computed here by hand."""
    adapter = load_file(adapter_dir / "adapter_model.safetensors")
    expected = dict(base)
    for key, a in adapter.items():
        if ".lora_A." not in key:
            continue
        b = adapter[key.replace(".lora_A.", ".lora_B.")]
        module = key.removeprefix("base_model.model.").split(".lora_A.")[0]
        expected[f"{module}.weight"] = base[f"{module}.weight"] + b @ a * scale
    return expected


def test_lora_options_from_mapping_and_errors():
    options = config_from_dict({"loss": "sft", "lora": {"enabled": True, "r": 16}}).lora
    # the other fields keep the schema's defaults
    assert options == LoraOptions(enabled=True, r=16, alpha=16.0, dropout=0.0,
                                  target_modules=["query_key_value", "dense"])
    assert config_from_dict({"loss": "sft"}).lora.enabled is False  # off unless asked for
    assert cfg(lora={"r": 4}).lora.enabled is False
    with pytest.raises(ValueError, match=r"training.lora: Additional properties .*'rank'"):
        config_from_dict({"loss": "sft", "lora": {"rank": 8}})
    with pytest.raises(ValueError, match="training.lora.r: 0 is less than the minimum of 1"):
        config_from_dict({"loss": "sft", "lora": {"r": 0}})
    with pytest.raises(ValueError, match=r"training.report_to: \['tensorbord'\] is not valid"):
        config_from_dict({"loss": "sft", "report_to": ["tensorbord"]})
    # what launch_or_train writes for accelerate launch (asdict) reads back as the same config
    again = lora_cfg(report_to=["tensorboard"], tracker_dir="tb")
    assert config_from_dict(asdict(again)) == again


@pytest.mark.parametrize(("targets", "modules", "checkpointing"), [
    (["query_key_value", "dense"], ATTENTION, False),
    # with gradient checkpointing the frozen embeddings' output must still carry grad to the adapters
    (["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"], {**ATTENTION, **MLP}, True),
])
def test_only_adapters_train_and_are_counted(world, tmp_path, targets, modules, checkpointing):
    out = tmp_path / "run"
    summary = train(world["model"], world["pairs"], world["ref"], out,
                    lora_cfg(max_steps=2, lora={"target_modules": targets},
                             gradient_checkpointing=checkpointing))
    expected = adapter_count(4, modules)
    assert summary["trainable_parameters"] == expected  # 1536 for attention only, 4608 with the MLP
    base = params(world["model"])
    assert summary["parameters"] == sum(p.numel() for p in base.values()) + expected
    # every weight the adapters do not touch is the base weight bit for bit; the touched ones moved
    merged = params(out)
    touched = {f"gpt_neox.layers.{i}.{'attention' if name in ATTENTION else 'mlp'}.{name}.weight"
               for i in range(LAYERS) for name in modules}
    assert len(touched) == LAYERS * len(modules)
    for key, value in base.items():
        if key in touched:
            assert (merged[key] - value).abs().max() > 0, key
        else:
            torch.testing.assert_close(merged[key], value, atol=0, rtol=0)


def test_lora_loss_goes_down_and_saved_model_is_the_merged_adapted_policy(world, tmp_path):
    from peft import PeftModel

    out = tmp_path / "run"
    train(world["model"], world["pairs"], world["ref"], out,
          lora_cfg(max_steps=24, batch_size=8, checkpoint_every=12, learning_rate=1e-2))
    metrics = pd.read_csv(out / "metrics.csv")
    assert metrics["loss"].tail(4).mean() < 0.5 * metrics["loss"].head(2).mean()
    assert abs(metrics.loc[0, "margin"]) < 1e-4  # B = 0 at the start: the policy starts as the reference

    base = params(world["model"])
    for saved in (out, out / "snapshots" / "step-000012"):
        # the adapter beside the weights; the weights are base + B @ A * alpha / r (computed by hand)
        assert (saved / ADAPTER_DIR / "adapter_config.json").is_file()
        assert not (saved / "adapter_config.json").exists()  # from_pretrained(saved) must not see an adapter
        merged = params(saved)
        expected = merged_expected(base, saved / ADAPTER_DIR, LORA["alpha"] / LORA["r"])
        assert merged.keys() == expected.keys()
        for key in merged:
            torch.testing.assert_close(merged[key], expected[key], atol=1e-6, rtol=0)
    snapshot, final = params(out / "snapshots" / "step-000012"), params(out)
    assert any((snapshot[k] - final[k]).abs().max() > 1e-4 for k in final)  # the snapshot is step 12, not 24

    # what sampling loads (plain from_pretrained) gives the adapted policy's log-probs, not the base's
    ids = torch.tensor([[5, 17, 42, 9, 3, 77, 12, 8]])
    with torch.no_grad():
        loaded = AutoModelForCausalLM.from_pretrained(out).eval()
        assert isinstance(loaded, GPTNeoXForCausalLM)
        adapted = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(world["model"]),
                                            out / ADAPTER_DIR).eval()
        reference = AutoModelForCausalLM.from_pretrained(world["model"]).eval()
        logits, want, ref = (m(ids).logits.log_softmax(-1) for m in (loaded, adapted, reference))
    torch.testing.assert_close(logits, want, atol=1e-5, rtol=0)
    assert (logits - ref).abs().max() > 0.1
    # sampled tokens: the same seed draws differently from the adapted and the base model
    draws = []
    for model in (loaded, reference):
        torch.manual_seed(0)
        draws.append(model.generate(ids, do_sample=True, max_new_tokens=32, top_k=0, pad_token_id=0))
    assert not torch.equal(draws[0], draws[1])


def test_lora_resume_after_crash_matches_uninterrupted_run(world, tmp_path):
    full, broken = tmp_path / "full", tmp_path / "broken"
    # dropout: RNG state resumed too
    options = {"max_steps": 6, "checkpoint_every": 2, "lora": {"dropout": 0.1}}
    train(world["model"], world["pairs"], world["ref"], full, lora_cfg(**options))

    def crash_at_step_2(step, row):
        if step == 2:  # after the step-2 checkpoint (written after step 1), partway to the next
            raise Crash

    with pytest.raises(Crash):
        train(world["model"], world["pairs"], world["ref"], broken, lora_cfg(**options),
              callback=crash_at_step_2)
    summary = train(world["model"], world["pairs"], world["ref"], broken, lora_cfg(**options))
    assert summary["resumed_from_step"] == 2
    a, b = pd.read_csv(full / "metrics.csv"), pd.read_csv(broken / "metrics.csv")
    assert b["step"].tolist() == list(range(6))
    assert b["loss"].tolist() == pytest.approx(a["loss"].tolist(), rel=1e-5)
    pa, pb, start = params(full), params(broken), params(world["model"])
    assert any((pa[k] - start[k]).abs().max() > 1e-3 for k in pa)
    for k in pa:
        torch.testing.assert_close(pb[k], pa[k], atol=1e-6, rtol=0)
    # another LoRA setting does not resume these checkpoints: they are moved aside, the run starts afresh
    summary = train(world["model"], world["pairs"], world["ref"], broken,
                    lora_cfg(**{**options, "max_steps": 2, "lora": {"r": 8}}))
    assert summary["resumed_from_step"] == 0 and len(list(tmp_path.glob("broken.stale-*"))) == 1


def test_an_extended_lora_run_replaces_its_adapter(world, tmp_path):
    out = tmp_path / "run"
    train(world["model"], world["pairs"], world["ref"], out, lora_cfg(max_steps=3, checkpoint_every=1))
    first = load_file(out / ADAPTER_DIR / "adapter_model.safetensors")
    # from the kept step-2 checkpoint to step 5; the final save moves a new adapter/ over the old one
    summary = train(world["model"], world["pairs"], world["ref"], out,
                    lora_cfg(max_steps=5, checkpoint_every=1))
    assert summary["resumed_from_step"] == 2 and summary["steps"] == 5
    assert not (out / ".model-tmp").exists()
    second = load_file(out / ADAPTER_DIR / "adapter_model.safetensors")
    assert any((second[k] - first[k]).abs().max() > 0 for k in first)
    expected = merged_expected(params(world["model"]), out / ADAPTER_DIR, LORA["alpha"] / LORA["r"])
    merged = params(out)
    for key in merged:
        torch.testing.assert_close(merged[key], expected[key], atol=1e-6, rtol=0)


# ---------------------------------------------------------------------------------------- trackers


def tensorboard_scalars(logdir: Path) -> dict[str, dict[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    # the scalars' directory; add_hparams writes its own events under a time-named subdirectory
    runs = {p.parent for p in logdir.rglob("events.out.tfevents.*")
            if not p.parent.name.replace(".", "").isdigit()}
    assert len(runs) == 1, runs
    events = EventAccumulator(str(runs.pop()), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: {e.step: e.value for e in events.Scalars(tag)} for tag in events.Tags()["scalars"]}


def test_tensorboard_logs_what_metrics_csv_holds_and_the_config(world, tmp_path):
    out = tmp_path / "run"
    options = {"max_steps": 6, "checkpoint_every": 3, "report_to": "tensorboard", "validation_fraction": 0.2,
               "eval_every": 2}

    def crash_at_step_4(step, row):
        if step == 4:
            raise Crash

    with pytest.raises(Crash):  # and a resume: tensorboard must not keep the killed run's step 3 and 4 twice
        train(world["model"], world["pairs"], world["ref"], out, cfg(**options), callback=crash_at_step_4)
    train(world["model"], world["pairs"], world["ref"], out, cfg(**options))
    logdir = out / "tracker" / "bonbon"
    scalars = tensorboard_scalars(logdir)
    metrics = pd.read_csv(out / "metrics.csv")
    assert metrics["step"].tolist() == list(range(6))
    compared = 0
    for column in METRIC_COLUMNS[1:]:
        logged = scalars.get(column, {})
        present = {int(s): float(v) for s, v in zip(metrics["step"], metrics[column], strict=True)
                   if math.isfinite(v)}
        assert set(logged) == set(present), column  # every value, at its step, and no blank cell
        for step, value in present.items():
            assert logged[step] == pytest.approx(value, rel=1e-6, abs=1e-7), (column, step)
            compared += 1
    assert set(scalars) <= set(METRIC_COLUMNS)
    assert compared > 6 * 10 and len(scalars["val_loss"]) == 3  # validation at steps 1, 3, 5
    # the run's config, as hyper-parameters (accelerate also writes them as hparams.yml)
    hparams = [yaml.safe_load(p.read_text()) for p in logdir.rglob("hparams.yml")]
    assert hparams and all(h["run"] == "run" and h["learning_rate"] == 1e-3 and h["lora.enabled"] is False
                           for h in hparams)
    assert hparams[-1]["beta"] == pytest.approx(beta_star(4))  # resolved from "auto"


def wandb_history(run_file: Path) -> list[dict[str, float]]:
    """The history rows of an offline wandb run file (run-*.wandb): a LevelDB-style log (7-byte header,
    32 KiB blocks of records crc32/length/type, a value split over blocks as FIRST/MIDDLE/LAST) of
    wandb's protobuf Records. wandb 0.31 ships no Python reader for it, so this is one."""
    import json
    import struct

    from wandb.proto import wandb_internal_pb2

    data, rows, pos, pending = run_file.read_bytes(), [], 7, b""
    assert data[:4] == b":W&B", data[:7]
    while pos + 7 <= len(data):
        left = 32768 - pos % 32768
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7]) if left >= 7 else (0, 0, 0)
        if kind == 0:  # the end of a block is padded
            pos += left
            continue
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            if record.WhichOneof("record_type") == "history":
                rows.append({item.key or "/".join(item.nested_key): json.loads(item.value_json)
                             for item in record.history.item})
    return rows


def assert_logged_as_metrics_csv(logged: dict[str, dict[int, float]], metrics: pd.DataFrame) -> int:
    """Every finite metrics.csv value logged at its step, nothing else; returns how many were compared."""
    compared = 0
    for column in METRIC_COLUMNS[1:]:
        present = {int(s): float(v) for s, v in zip(metrics["step"], metrics[column], strict=True)
                   if math.isfinite(v)}
        assert set(logged.get(column, {})) == set(present), column
        for step, value in present.items():
            assert logged[column][step] == pytest.approx(value, rel=1e-6, abs=1e-7), (column, step)
            compared += 1
    assert set(logged) <= set(METRIC_COLUMNS)
    return compared


TRACKED = {"max_steps": 5, "validation_fraction": 0.2, "eval_every": 2}


def test_wandb_offline_logs_what_metrics_csv_holds(world, tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.delenv("WANDB_MODE", raising=False)  # offline is the default: nothing leaves the machine
    monkeypatch.setenv("WANDB_SILENT", "true")
    out = tmp_path / "run"
    train(world["model"], world["pairs"], world["ref"], out, cfg(report_to="wandb", **TRACKED))
    run_files = list((out / "tracker" / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(run_files) == 1, run_files
    logged: dict[str, dict[int, float]] = {}
    for row in wandb_history(run_files[0]):
        for key, value in row.items():
            if not key.startswith("_"):  # wandb's own _step, _runtime, _timestamp
                logged.setdefault(key, {})[int(row["_step"])] = float(value)
    metrics = pd.read_csv(out / "metrics.csv")
    assert assert_logged_as_metrics_csv(logged, metrics) > 5 * 10 and len(logged["val_loss"]) == 3


def test_mlflow_logs_what_metrics_csv_holds_to_a_local_file_store(world, tmp_path, monkeypatch):
    mlflow = pytest.importorskip("mlflow")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    out = tmp_path / "run"
    train(world["model"], world["pairs"], world["ref"], out, cfg(report_to=["mlflow"], **TRACKED))
    store = out / "tracker" / "mlruns"
    client = mlflow.tracking.MlflowClient(store.resolve().as_uri())
    (experiment,) = [e for e in client.search_experiments() if e.name == "bonbon"]
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_name == "run" and float(run.data.params["beta"]) == pytest.approx(beta_star(4))
    logged = {key: {m.step: m.value for m in client.get_metric_history(run.info.run_id, key)}
              for key in run.data.metrics}
    metrics = pd.read_csv(out / "metrics.csv")
    assert assert_logged_as_metrics_csv(logged, metrics) > 5 * 10 and len(logged["val_loss"]) == 3


def test_a_tracker_that_cannot_start_does_not_fail_the_run(world, tmp_path, monkeypatch, caplog):
    from accelerate.tracking import TensorBoardTracker

    def refuse(self):
        raise ConnectionError("server unreachable")

    monkeypatch.setattr(TensorBoardTracker, "start", refuse)
    with caplog.at_level(logging.WARNING, logger="bonbon.train"):
        summary = train(world["model"], world["pairs"], world["ref"], tmp_path / "run",
                        cfg(max_steps=2, report_to=["tensorboard"]))
    assert summary["steps"] == 2 and (tmp_path / "run" / "train_summary.json").is_file()
    assert "tracker tensorboard could not start (ConnectionError: server unreachable)" in caplog.text


def test_a_tracker_whose_package_is_missing_is_skipped_with_a_warning(world, tmp_path, caplog):
    from accelerate.tracking import get_available_trackers

    absent = next(t for t in ("wandb", "mlflow", "comet_ml", "aim")
                  if t not in {x.value for x in get_available_trackers()})
    with caplog.at_level(logging.WARNING, logger="bonbon.train"):
        train(world["model"], world["pairs"], world["ref"], tmp_path / "run",
              cfg(max_steps=1, report_to=[absent]))
    assert f"the package of tracker(s) ['{absent}'] is not installed" in caplog.text
    assert not (tmp_path / "run" / "tracker").exists()


def test_lora_options_reach_peft():
    """r, alpha, dropout and the target modules of training.lora are those of the peft model: every adapted
    module's dropout has p = 0.3 and its scale alpha / r. Pins an option dropped on the way (dropout left
    at peft's default 0, alpha taken as r)."""
    from transformers import GPTNeoXConfig

    from bonbon.train.lora import wrap_lora

    torch.manual_seed(0)
    model = GPTNeoXForCausalLM(GPTNeoXConfig(vocab_size=32, hidden_size=16, num_hidden_layers=2,
                                             num_attention_heads=2, intermediate_size=32,
                                             max_position_embeddings=32))
    info: dict = {}
    options = LoraOptions(enabled=True, r=2, alpha=6.0, dropout=0.3, target_modules=["query_key_value"])
    wrapped = wrap_lora(model, options, info)
    config = wrapped.peft_config["default"]
    assert (config.r, config.lora_alpha, config.lora_dropout) == (2, 6.0, 0.3)
    adapted = [m for name, m in wrapped.named_modules()
               if name.endswith("query_key_value") and hasattr(m, "lora_A")]
    assert len(adapted) == 2
    for module in adapted:
        assert module.lora_dropout["default"].p == 0.3 and module.scaling["default"] == pytest.approx(3.0)
    assert (info["trainable_parameters"] == 2 * 2 * (16 + 48)
            and info["parameters"] > info["trainable_parameters"])
    off = {}
    assert wrap_lora(model, LoraOptions(enabled=False, r=2, alpha=6.0, dropout=0.3, target_modules=[]),
                     off) is model
