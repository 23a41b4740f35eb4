"""What Snakemake reruns and refuses, and bad input caught before the first job (issue 14)."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from bonbon.config import SCHEMA, coerce_config, schema_errors

from conftest import REPO

DEFAULT = yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def snakemake(workdir: Path, *args: str, cwd: Path | None = None,
              repo: Path = REPO) -> subprocess.CompletedProcess:
    """The Snakemake CLI on the repository's Snakefile, as a user types it (no --configfile)."""
    cmd = [sys.executable, "-m", "snakemake", "-s", str(repo / "Snakefile"), "-d", str(workdir),
           "--cores", "2", *args]
    env = {**os.environ, "PYTHONPATH": str(repo / "src")}
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd or workdir.parent)


# ------------------------------------------------------------------------------ 1. command-line overrides


def test_text_values_take_the_type_the_schema_wants():
    config = {
        "n_values": ["2", "4"],  # --config n_values=[2,4]
        "sft": {"enabled": "false"},  # --config 'sft={enabled: false}'
        "generation": {"seed": "3", "top_p": "1", "temperature": 1},
        "training": {"learning_rate": "1e-4", "max_steps": "null", "mixed_precision": "no", "epochs": 2.0},
        "runs": [{"loss": "dpo", "beta": ["0.1", "auto"], "alpha": [0]}],
        "datasets": {"hh": {"source": "file", "path": "2024.csv", "max_prompts": "24"}},
        "models": {"base": "123"},
    }
    coerce_config(config, SCHEMA)
    assert config == {
        "n_values": [2, 4],
        "sft": {"enabled": False},
        "generation": {"seed": 3, "top_p": 1.0, "temperature": 1.0},
        "training": {"learning_rate": 1e-4, "max_steps": None, "mixed_precision": "no", "epochs": 2},
        "runs": [{"loss": "dpo", "beta": [0.1, "auto"], "alpha": [0.0]}],
        "datasets": {"hh": {"source": "file", "path": "2024.csv", "max_prompts": 24}},
        "models": {"base": "123"},  # a string key keeps its string
    }
    assert type(config["training"]["epochs"]) is int and type(config["generation"]["top_p"]) is float
    # what is not a value of the wanted type is left for the schema to name
    bad = coerce_config({"generation": {"max_new_tokens": "many", "top_k": "1.5"}}, SCHEMA)
    assert schema_errors({**copy.deepcopy(DEFAULT), **bad}, SCHEMA) == [
        "config key generation.max_new_tokens: 'many' is not of type 'integer'",
        "config key generation.top_k: 1.5 is not of type 'integer'",
    ]


def test_yaml_1_1_exponent_without_a_dot_is_a_number(tmp_path):
    text = (REPO / "config" / "config.yaml").read_text().replace("learning_rate: 0.0001",
                                                                 "learning_rate: 1e-4")
    config = yaml.safe_load(text)
    assert config["training"]["learning_rate"] == "1e-4"  # what PyYAML (YAML 1.1) makes of it
    assert coerce_config(config, SCHEMA)["training"]["learning_rate"] == 1e-4


@pytest.mark.parametrize(
    ("override", "present", "absent"),
    [
        # the default runs name n 2, 4 and 8 (int's config), so the override adds 16 rather than dropping 8
        ("n_values=[2,4,8,16]", ["results/pairs/toy/n16.parquet", "results/pairs/toy/n2.parquet"],
         ["results/pairs/toy/n32.parquet"]),
        ("sft={enabled: false}", ["results/pairs/toy/n8.parquet"], ["results/models/sft/"]),
        ("shards={generate: 3, sample: 2}", ["results/generate/toy/shards/samples0-2/3-of-3.parquet",
                                             "results/samples/toy-reference/shards/2-of-2.parquet"],
         ["results/generate/toy/shards/samples0-2/1-of-1.parquet"]),
    ],
)
def test_command_line_overrides_parse_before_validation(tmp_path, override, present, absent):
    result = snakemake(tmp_path / "work", "-n", "--config", override)
    assert result.returncode == 0, result.stderr[-3000:]
    for path in present:
        assert path in result.stdout, (path, result.stdout[-3000:])
    for path in absent:
        assert path not in result.stdout, path


def test_workdir_flag_works_with_the_default_config(tmp_path):
    """`-d DIR` from anywhere: the embedded default config is read from the workflow, not from DIR."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = snakemake(tmp_path / "work", "-n", "--quiet", "rules", cwd=elsewhere)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "toy_corpus" in result.stdout and "train" in result.stdout
    assert not (tmp_path / "work" / "results").exists()


# ------------------------------------------------------------------------------ 2. up-front checks


def model_variant(toy_models, tmp_path, source: str, name: str, config=None, tokenizer=None) -> str:
    """A copy of a toy model with its config.json / tokenizer_config.json edited."""
    import json
    import shutil

    target = tmp_path / name
    shutil.copytree(toy_models[source], target)
    for file, edit in (("config.json", config), ("tokenizer_config.json", tokenizer)):
        if edit is not None:
            values = json.loads((target / file).read_text())
            edit(values)
            (target / file).write_text(json.dumps(values))
    return str(target)


def test_models_are_checked_before_any_job(toy_models, tmp_path):
    from bonbon.config import ConfigError, check_models

    base, reward = str(toy_models["base"]), str(toy_models["reward"])
    check_models({"models": {"base": base, "reward": reward}})
    two_labels = model_variant(toy_models, tmp_path, "reward", "two",
                               config=lambda c: c.update(id2label={"0": "bad", "1": "good"},
                                                         label2id={"bad": 0, "good": 1}))
    no_eos = model_variant(toy_models, tmp_path, "base", "no-eos", tokenizer=lambda t: t.pop("eos_token"))
    no_max = model_variant(toy_models, tmp_path, "reward", "no-max",
                           tokenizer=lambda t: t.pop("model_max_length"))
    cases = [
        ({"reward": two_labels},
         r"models.reward: '.*two' has 2 output labels \(\['bad', 'good'\]\); a reward model "
         r"has one.*give a one-label reward model"),
        ({"reward": base},
         r"models.reward: '.*base' holds a GPTNeoXForCausalLM, not a reward model: loaded as one "
         r"it would get a new, untrained 2-label head"),
        ({"base": no_eos},
         r"models.base: '.*no-eos': its tokenizer has no EOS token.*generation.max_new_tokens; "
         r"set eos_token in its tokenizer_config.json"),
        ({"base": reward},
         r"models.base: '.*reward' is a deberta-v2 model, which has no causal-LM form.*must be a "
         r"decoder-only language model"),
        ({"reward": no_max},
         r"models.reward: '.*no-max': its tokenizer has no usable model_max_length \(1e\+30\).*"
         r"set model_max_length in its tokenizer_config.json.*max_position_embeddings is"),
    ]
    for models, message in cases:
        with pytest.raises(ConfigError, match=message):
            check_models({"models": {"base": base, "reward": reward, **models}})


def test_a_bad_model_stops_the_workflow_before_any_job(toy_models, tmp_path):
    from conftest import run_workflow

    config = copy.deepcopy(DEFAULT)
    config["models"] = {"base": str(toy_models["reward"]), "reward": "toy"}
    result = run_workflow(tmp_path, config, "-n", check=False)
    assert result.returncode != 0
    output = result.stdout + result.stderr  # a dry run prints its error on stdout
    assert "config key models.base:" in output and "deberta-v2 model" in output
    assert not (tmp_path / "results").exists()


def test_config_checks_that_need_no_model(tmp_path):
    from bonbon.config import ConfigError, check_config

    def config_with(**changes):
        config = copy.deepcopy(DEFAULT)
        config.update(changes)
        return config

    model_file = tmp_path / "model.safetensors"
    model_file.write_bytes(b"")
    with pytest.raises(ConfigError,
                       match=r"models.base: '.*model.safetensors' is a file, not a model directory: "
                             r"give the directory that holds its config.json"):
        check_config(config_with(models={"base": str(model_file), "reward": "toy"}))
    with pytest.raises(ConfigError,
                       match=r"config key training.max_prompt_length: 192 leaves no room for the "
                             r"response in training.max_length 192: make it smaller"):
        check_config(config_with(training={**DEFAULT["training"], "max_prompt_length": 192}))
    with pytest.raises(ConfigError, match=r"config key sft.training.max_prompt_length: 256 leaves no room"):
        check_config(config_with(sft={**DEFAULT["sft"], "training": {"max_length": 128}}))  # 256 by default
    with pytest.raises(ConfigError,
                       match=r"config key toy.eval_fraction: 0.0 of 640 prompts leaves no eval prompts"):
        check_config(config_with(toy={**DEFAULT["toy"], "eval_fraction": 0.0}))


def write_csv(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def test_prompt_files_are_read_before_any_job(tmp_path):
    from bonbon.config import ConfigError, check_prompt_files

    ok = '"\n\nHuman: how do I fold a shirt?\n\nAssistant:"\n'
    bad = '"no turns at all"\n'

    def check(path: str, **dataset):
        check_prompt_files({"datasets": {"hh": {"source": "file", "path": path, **dataset}}})

    with pytest.raises(ConfigError,
                       match=r"datasets.hh.path: .*header.csv: no prompts \(the file has a header "
                             r"but no rows\)"):
        check(write_csv(tmp_path / "header.csv", "prompt\n"))
    # a whitespace-only line is row 2 of the file: the bad prompt after it is row 3, as an editor shows it
    with pytest.raises(ConfigError, match=r"datasets.hh.path: .*blank.csv: row 3: does not start with"):
        check(write_csv(tmp_path / "blank.csv", "prompt\n" + ok + "   \n" + bad))
    with pytest.raises(ConfigError,
                       match=r"config key datasets.hh: no eval prompts: of the 1 prompts of .*split.csv, "
                             r"its split column has no 'eval' rows, and the evaluation samples the eval "
                             r"ones: mark some rows split=eval"):
        check(write_csv(tmp_path / "split.csv", "prompt,split\n" + ok.strip() + ",train\n"))
    with pytest.raises(ConfigError,
                       match=r"datasets.hh: no eval prompts: .*eval_fraction 0.0 puts none of them "
                             r"there.*: raise eval_fraction"):
        check(write_csv(tmp_path / "fraction.csv", "prompt\n" + ok), eval_fraction=0.0)


def test_blank_csv_rows_are_dropped_and_counted(tmp_path):
    from bonbon.prompts import read_prompt_file

    ok = '"\n\nHuman: how do I fold a shirt?\n\nAssistant:"\n'
    frame = read_prompt_file(write_csv(tmp_path / "p.csv",
                                       "prompt\n" + ok + "  \n" + ok.replace("shirt", "towel") + "\n"))
    assert len(frame) == 2 and frame.attrs["blank_rows"] == 2  # the whitespace line and the empty last line
    assert list(frame.index) == [0, 1]


# ------------------------------------------------------------------------------ 3. empty shards


def local_world(toy_models, tmp_path, train: int = 3, eval_: int = 2) -> dict:
    """A config on the tiny models of the toy_models fixture and a prompt file of train + eval prompts."""
    import pandas as pd

    tasks = ["fold a shirt", "boil an egg", "clean a window", "plant a tree", "fix a chair", "wash a car",
             "paint a wall", "bake bread"]
    prompts = [f"\n\nHuman: How do I {task}?\n\nAssistant:" for task in tasks[: train + eval_]]
    path = tmp_path / "prompts.csv"
    pd.DataFrame({"prompt": prompts, "split": ["train"] * train + ["eval"] * eval_}).to_csv(path, index=False)
    return {
        "datasets": {"local": {"source": "file", "path": str(path)}},
        "n_values": [2],
        "models": {"base": str(toy_models["base"]), "reward": str(toy_models["reward"])},
        "check_hub": False,
        "generation": {"max_new_tokens": 6, "batch_size": 4},
        "sft": {"enabled": False},
        "training": {"batch_size": 1, "max_steps": 2, "max_length": 64, "max_prompt_length": 32,
                     "checkpoint_every": 1, "warmup_steps": 0, "learning_rate": 1e-4},
        "runs": [],
        "evaluation": {"samples_per_prompt": 1, "batch_size": 8},
        "device": "cpu",
    }


def test_more_shards_than_batches_give_empty_tables_that_score_sample_and_gather_accept(toy_models, tmp_path):
    import pandas as pd
    import pyarrow.parquet as pq

    from conftest import run_workflow

    config = local_world(toy_models, tmp_path)
    # 3 train prompts at 2 a batch (block 0-2), 2 eval prompts with 2 best-of-2 candidates each at 2 a batch,
    # and 1 reference draw each at 4 a batch: 2 batches or fewer, 3 shards
    config["shards"] = {"generate": 3, "sample": 3}
    run_workflow(tmp_path, config, "results/score/local/rewards.parquet",
                 "results/samples/local-reference.parquet", "results/samples/local-bon-candidates0-2.parquet")
    results = tmp_path / "results"
    generated, scored = (results / "generate/local/shards/samples0-2",
                         results / "score/local/shards/samples0-2")
    for empty, full in ((generated / "3-of-3.parquet", generated / "1-of-3.parquet"),
                        (scored / "3-of-3.parquet", scored / "1-of-3.parquet"),
                        (results / "samples/local-reference/shards/3-of-3.parquet",
                         results / "samples/local-reference/shards/1-of-3.parquet"),
                        (results / "samples/local-bon-candidates0-2/shards/3-of-3.parquet",
                         results / "samples/local-bon-candidates0-2/shards/1-of-3.parquet")):
        assert pq.read_metadata(empty).num_rows == 0 and pq.read_metadata(full).num_rows > 0
        assert pq.read_schema(empty).remove_metadata() == pq.read_schema(full).remove_metadata(), empty
    rewards = pd.read_parquet(results / "score/local/rewards.parquet")
    assert len(rewards) == 3 * 2 and rewards["reward"].notna().all() and rewards["finished"].dtype == bool
    reference = pd.read_parquet(results / "samples/local-reference.parquet")
    assert len(reference) == 2 * 1 and reference["sample_idx"].dtype == "int64"
    candidates = pd.read_parquet(results / "samples/local-bon-candidates0-2.parquet")
    assert sorted(candidates["sample_idx"].unique()) == [1, 2] and len(candidates) == 2 * 2
    assert "from 3 tables (1 empty)" in (tmp_path / "logs/score/local/gather.log").read_text()


# ------------------------------------------------------------------------------ 4. quiet, honest logs


def test_cutting_on_purpose_logs_no_tokenizer_warning(toy_models, caplog):
    """Texts longer than the reward model's 64 tokens are cut (and counted), without transformers'
    "Token indices sequence length is longer than..." warning in the log."""
    import logging

    import pandas as pd
    import transformers
    from transformers import AutoTokenizer

    from bonbon.batching import tokenize_pairs
    from bonbon.models import load_reward_model
    from bonbon.score import score_samples

    long = " ".join(["Fold the left sleeve over the back and smooth it flat."] * 12)
    samples = pd.DataFrame({"prompt": ["\n\nHuman: How do I fold a shirt?\n\nAssistant:"] * 2,
                            "response": [" " + long, " Fold it."]})
    transformers.utils.logging.enable_propagation()
    try:
        with caplog.at_level(logging.WARNING):
            model, tokenizer = load_reward_model(str(toy_models["reward"]))
            _, counts = score_samples(samples, model, tokenizer, batch_size=2)
            policy_tokenizer = AutoTokenizer.from_pretrained(toy_models["base"])
            policy_tokenizer.model_max_length = 32
            pairs = pd.DataFrame({"prompt_id": ["a"], "prompt": samples["prompt"][:1], "chosen": [" " + long],
                                  "rejected": [" Fold it."], "chosen_idx": [0], "rejected_idx": [1]})
            tokenize_pairs(pairs, policy_tokenizer, 16, 32)
    finally:
        transformers.utils.logging.disable_propagation()
    assert counts["prompt_and_response_cut"] == 1  # cut on purpose, and counted
    assert not [r for r in caplog.records if "Token indices sequence length" in r.getMessage()], caplog.text


# ------------------------------------------------------------------------------ a finished tiny run


def tiny_config(toy_models, root: Path) -> dict:
    """The whole DAG on the fixture's tiny models: SFT, one BoNBoN run, evaluation; about 20 jobs."""
    config = local_world(toy_models, root, train=6, eval_=2)
    config["sft"] = {"enabled": True, "data": "toy",
                     "training": {"optimizer": "adamw", "learning_rate": 5e-4, "warmup_steps": 0,
                                  "batch_size": 4, "max_steps": 2, "max_length": 64, "max_prompt_length": 32,
                                  "checkpoint_every": 1}}
    config["runs"] = [{"loss": "bonbon", "beta": ["auto"], "alpha": [0.005]}]
    config["toy"] = {"n_dialogues": 60}  # the SFT targets: the toy corpus
    return config


@pytest.fixture(scope="module")
def finished(toy_models, tmp_path_factory) -> Path:
    """A finished run of tiny_config; tests work on copies of it (see `copy_run`)."""
    from conftest import run_workflow

    root = tmp_path_factory.mktemp("finished")
    run_workflow(root / "run", tiny_config(toy_models, root))
    return root / "run"


def copy_run(finished: Path, tmp_path: Path) -> Path:
    """A copy of the finished run, with its mtimes and Snakemake's metadata (relative paths)."""
    import shutil

    target = tmp_path / "run"
    shutil.copytree(finished, target, symlinks=True)
    return target


def dry_run_jobs(workdir: Path, *args: str, repo: Path = REPO) -> dict[str, int]:
    """What `snakemake -n` would run now, as {rule: count} (empty: nothing to do)."""
    result = snakemake(workdir, "-n", "--configfile", str(workdir / "test-config.yaml"), *args, repo=repo)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    jobs, table = {}, False
    for line in result.stdout.splitlines():
        parts = line.split()
        if line.startswith("job ") and "count" in line:
            table = True
        elif table and parts and parts[0] == "total":
            break
        elif table and len(parts) == 2 and parts[1].isdigit():
            jobs[parts[0]] = int(parts[1])
    return {rule: n for rule, n in jobs.items() if rule != "all"}


# ------------------------------------------------------------------------------ 5. missed reruns


@pytest.mark.parametrize(
    ("deleted", "rerun"),
    [
        ("results/models/sft/model.safetensors", "sft"),
        ("results/models/local-n2-bonbon-betaauto-alpha0.005/tokenizer_config.json", "train"),
        ("results/score/local/rewards.parquet", "gather_rewards"),
        ("results/generate/local/shards/samples0-2/1-of-1.parquet", "generate"),
        ("results/samples/local-n2-bonbon-betaauto-alpha0.005.parquet", "gather_policy_samples"),
        ("results/ref_logps/local/n2.parquet", "gather_ref_logps"),
    ],
)
def test_deleting_a_file_a_later_job_reads_reschedules_its_producer(finished, tmp_path, deleted, rerun):
    run = copy_run(finished, tmp_path)
    assert dry_run_jobs(run) == {}
    (run / deleted).unlink()
    assert rerun in dry_run_jobs(run)


@pytest.mark.parametrize("configfile", [None, "config/hh-pythia28.yaml"])
def test_snakemake_lint_is_clean(tmp_path, configfile):
    args = ["--lint"] + (["--configfile", str(REPO / configfile)] if configfile else [])
    result = snakemake(tmp_path / "work", *args)
    assert result.returncode == 0, result.stdout + result.stderr
    assert ("Lints for" not in result.stdout + result.stderr
            and "good condition" in result.stdout + result.stderr)


# ------------------------------------------------------------------------------ 6, 7. what reruns


def reordered(value):
    """The same config with every mapping's keys in reverse order (a YAML tool may re-dump it so)."""
    if isinstance(value, dict):
        return {k: reordered(value[k]) for k in reversed(list(value))}
    return [reordered(v) for v in value] if isinstance(value, list) else value


def test_settings_that_change_no_result_rerun_nothing(finished, tmp_path):
    run = copy_run(finished, tmp_path)
    config = yaml.safe_load((run / "test-config.yaml").read_text())
    assert dry_run_jobs(run) == {}
    config = reordered(config)
    # learning_rate 1e-4 as YAML 1.1 reads it, max_grad_norm 10 for 10.0
    config["training"].update(learning_rate="1e-4", max_grad_norm=10,
                              weight_decay=0.0, log_every=1, checkpoint_every=7, keep_checkpoints=3,
                              gradient_checkpointing=True, on_config_change="delete",  # spelled-out defaults
                              eval_every=3, report_to="tensorboard", tracker_dir="elsewhere",  # runtime keys
                              tracker_project="other", lora={"r": 8})
    config["generation"].update(top_k=0, backend="transformers", vllm={"dtype": "bfloat16"})  # runtime keys
    config["scoring"] = {"batch_size": 3}
    config["evaluation"].update(batch_size=5, theory_n_max=32)
    config["device"] = "auto"
    config["accelerate"] = {"config_file": "config/accelerate/ddp.yaml"}
    config["datasets"]["local"].update(eval_fraction=0.2, seed=0, max_prompts=None)
    (run / "test-config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    assert dry_run_jobs(run, "--set-threads", "score=1", "train=2") == {}


def test_a_changed_result_setting_reruns_exactly_what_follows_and_the_run_retrains_afresh(finished, tmp_path):
    from conftest import run_workflow

    run = copy_run(finished, tmp_path)
    name = "local-n2-bonbon-betaauto-alpha0.005"
    config = yaml.safe_load((run / "test-config.yaml").read_text())
    config["training"]["learning_rate"] = 2e-4
    (run / "test-config.yaml").write_text(yaml.safe_dump(config))
    assert dry_run_jobs(run) == {"train": 1, "sample": 1, "gather_policy_samples": 1, "evaluate": 1,
                                 "summary": 1, "plot_frontier": 1, "plot_distributions": 1,
                                 "plot_training": 1}
    run_workflow(run, config)  # the run's checkpoints were written at lr 1e-4: set aside, not resumed
    (stale,) = (run / "results" / "models").glob(f"{name}.stale-*")
    assert (stale / "checkpoints").is_dir()
    log = (run / "logs" / "train" / f"{name}.log").read_text()
    assert ("was written with other settings (learning_rate: 0.0001 -> 0.0002)" in log
            and "resuming" not in log)
    assert dry_run_jobs(run) == {}


def test_adding_an_n_computes_only_what_is_new_and_moves_no_estimate(finished, tmp_path):
    """n_values [2] -> [2, 4]: one more block of samples (2-4) and of best-of-n candidates, the pair file
    and best-of-4's evaluation; no existing sample, pair file, run or estimate is recomputed or moves."""
    from conftest import run_workflow

    run = copy_run(finished, tmp_path)
    config = yaml.safe_load((run / "test-config.yaml").read_text())
    config["n_values"] = [2, 4]
    config["runs"] = [{**config["runs"][0], "n": [2]}]  # the existing run alone: n = 4 adds best-of-4
    (run / "test-config.yaml").write_text(yaml.safe_dump(config))
    assert dry_run_jobs(run) == {"generate": 1, "score": 1, "gather_samples": 1, "gather_rewards": 1,
                                 "pairs": 1, "sample": 1, "gather_policy_samples": 1, "evaluate": 1,
                                 "summary": 1, "plot_frontier": 1, "plot_distributions": 1}
    kept = {path: path.read_bytes() for pattern in ("eval/local-*.parquet", "pairs/local/*.parquet",
                                                    "score/local/shards/*/*.parquet", "samples/*.parquet",
                                                    "models/*/model.safetensors")
            for path in (run / "results").glob(pattern)}
    assert len(kept) >= 8
    summary_before = pd.read_parquet(run / "results/eval/summary.parquet")
    run_workflow(run, config)
    for path, content in kept.items():
        assert path.read_bytes() == content, path
    summary = pd.read_parquet(run / "results/eval/summary.parquet").set_index("policy")
    assert "local-bon-n4" in summary.index
    pd.testing.assert_frame_equal(summary.loc[summary_before["policy"]], summary_before.set_index("policy"))
    rewards = pd.read_parquet(run / "results/score/local/rewards.parquet")
    assert sorted(rewards["sample_idx"].unique()) == [0, 1, 2, 3]


def test_raising_the_opponents_draws_only_the_new_block(finished, tmp_path):
    """evaluation.opponents 16 -> 32: one more block of opponents (16-32) is drawn and every policy is
    evaluated again against all 32; no other sample (the reference's own, best-of-n's candidates, the
    first 16 opponents) is drawn again."""
    from conftest import run_workflow

    run = copy_run(finished, tmp_path)
    config = yaml.safe_load((run / "test-config.yaml").read_text())
    config["evaluation"]["opponents"] = 32
    (run / "test-config.yaml").write_text(yaml.safe_dump(config))
    # evaluate: the reference, best-of-2 and the run's final model, each against all 32
    assert dry_run_jobs(run) == {"sample": 1, "gather_policy_samples": 1, "evaluate": 3, "summary": 1,
                                 "plot_frontier": 1, "plot_distributions": 1}
    kept = {path: path.read_bytes() for path in (run / "results" / "samples").glob("*.parquet")}
    # the reference's and the run's samples, best-of-2's candidates, opponents 0-2 ... 8-16
    assert len(kept) == 3 + 4
    run_workflow(run, config)
    for path, content in kept.items():
        assert path.read_bytes() == content, path
    new = pd.read_parquet(run / "results/samples/local-opponents16-32.parquet")
    assert sorted(new["sample_idx"].unique()) == list(range(16, 32))
    table = pd.read_parquet(run / "results/eval/local-bon-n2.parquet")
    assert (table["opponents"] == 32).all()
    summary = pd.read_parquet(run / "results/eval/summary.parquet").set_index("policy")
    assert (summary["n_opponents"] == 32).all() and summary.loc["local-reference", "calibration"]


def repo_copy(tmp_path: Path) -> Path:
    """The workflow's code (Snakefile, workflow/, src/, config/, envs/) in another place, to be changed."""
    import shutil

    copy = tmp_path / "repo"
    for part in ("Snakefile", "workflow", "src", "config", "envs"):
        source = REPO / part
        if source.is_dir():
            shutil.copytree(source, copy / part, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            copy.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy / part)
    return copy


def test_changed_package_code_reruns_the_rules_that_run_it(finished, tmp_path):
    run = copy_run(finished, tmp_path)
    repo = repo_copy(tmp_path)
    assert dry_run_jobs(run, repo=repo) == {}
    metrics = repo / "src" / "bonbon" / "metrics.py"  # imported by bonbon.evaluate only
    source = metrics.read_text()
    # a comment and a docstring change no result: nothing reruns
    metrics.write_text(source.replace('"""', '"""Reworded. ', 1) + "\n# a comment\n")
    assert dry_run_jobs(run, repo=repo) == {}
    # code: the rules whose scripts import bonbon.metrics (through bonbon.evaluate) rerun, and what
    # follows them; generation, scoring, pairs, training and sampling (bonbon.sampling) do not
    metrics.write_text(source + "\nVERSION = 2\n")
    assert dry_run_jobs(run, repo=repo) == {"evaluate": 3, "summary": 1, "plot_frontier": 1,
                                            "plot_distributions": 1}
    # after an upgrade known to change no result, --touch accepts the existing outputs
    assert snakemake(run, "--touch", "--configfile", str(run / "test-config.yaml"), repo=repo).returncode == 0
    assert dry_run_jobs(run, repo=repo) == {}


def test_canonical_settings_and_schema_defaults():
    from dataclasses import fields

    from bonbon.rerun import RUNTIME_TRAINING_KEYS, canonical, result_training
    from bonbon.train import TrainConfig

    assert repr(canonical({"b": {"y": 1, "x": [2, {"d": 0, "c": -0.0}]}, "a": (1,)})) == \
        repr({"a": [1], "b": {"x": [2, {"c": 0.0, "d": 0}], "y": 1}})
    assert "log_every" not in result_training({"log_every": 1, "learning_rate": 1e-4})
    # the schema writes out the loop's defaults, so that a spelled-out default is the same config
    from bonbon.config import training_defaults

    written = training_defaults()  # every loop setting has its default there (TrainConfig states none)
    assert set(written) <= {f.name for f in fields(TrainConfig)}
    assert set(RUNTIME_TRAINING_KEYS) <= set(written)
    # tracker and validation-interval keys are runtime-only; what changes the model is not
    assert {"report_to", "tracker_dir", "tracker_project", "eval_every"} <= set(RUNTIME_TRAINING_KEYS)
    assert not {"lora", "padding_free", "snapshot_every", "validation_fraction"} & set(RUNTIME_TRAINING_KEYS)


def test_code_version_follows_the_package_code_a_script_imports(tmp_path):
    from bonbon.rerun import code_version

    package = tmp_path / "src" / "pkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text('"""A."""\nfrom pkg.b import f\n\n\n'
                                  'def g():\n    """G."""\n    return f() + 1\n')
    (package / "b.py").write_text("def f():\n    return 1\n")
    (package / "c.py").write_text("X = 1\n")
    script = tmp_path / "script.py"
    script.write_text("from pkg.a import g\n\nprint(g())\n")
    version = code_version(script, tmp_path / "src", package="pkg")
    (package / "c.py").write_text("X = 2\n")  # not imported
    (package / "a.py").write_text('"""Another docstring."""\n# a comment\nfrom pkg.b import f\n\n\ndef g():\n'
                                  '    return f()   +   1\n')
    assert code_version(script, tmp_path / "src", package="pkg") == version
    (package / "b.py").write_text("def f():\n    return 2\n")  # imported through pkg.a
    assert code_version(script, tmp_path / "src", package="pkg") != version


def test_a_result_free_module_is_left_out_of_every_code_version(tmp_path):
    """bonbon.warm changes how a job starts, not what it computes: every workflow script imports it, and
    an edit to it must rerun nothing (rerun.RESULT_FREE_MODULES names it below the package)."""
    from bonbon.rerun import RESULT_FREE_MODULES, code_version, package_modules

    assert RESULT_FREE_MODULES == {"warm"}
    for script in (REPO / "workflow" / "scripts").glob("*.py"):
        assert "bonbon.warm" not in package_modules(script, REPO / "src"), script.name
    package = tmp_path / "src" / "pkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "warm.py").write_text("def hand_over(g):\n    return None\n")
    (package / "b.py").write_text("def f():\n    return 1\n")
    script = tmp_path / "script.py"
    script.write_text("from pkg.warm import hand_over\n\nhand_over(globals())\nfrom pkg.b import f\n")
    version = code_version(script, tmp_path / "src", package="pkg")
    (package / "warm.py").write_text("def hand_over(g):\n    return 1\n")
    assert code_version(script, tmp_path / "src", package="pkg") == version
    (package / "b.py").write_text("def f():\n    return 2\n")
    assert code_version(script, tmp_path / "src", package="pkg") != version


def test_an_evaluated_checkpoint_retrains_no_run(finished, tmp_path):
    run = copy_run(finished, tmp_path)
    config = yaml.safe_load((run / "test-config.yaml").read_text())
    config.setdefault("evaluation", {})["checkpoints"] = {"steps": [1]}  # a snapshot every tiny run has
    (run / "test-config.yaml").write_text(yaml.safe_dump(config))
    jobs = dry_run_jobs(run)
    assert "train" not in jobs and jobs.get("sample", 0) >= 1 and jobs.get("summary") == 1, jobs


def test_code_versions_know_the_modules_each_script_runs():
    from bonbon.rerun import package_modules

    scripts, src = REPO / "workflow" / "scripts", REPO / "src"
    wanted = {"sample.py": {"bonbon.sampling", "bonbon.models", "bonbon.tables", "bonbon.jobs",
                            "bonbon.generate"},
              "prompts.py": {"bonbon.chat", "bonbon.models", "bonbon.prompts"},
              "exact_world.py": {"bonbon.exact"}, "summary.py": {"bonbon.frontier", "bonbon.evaluate"},
              "train.py": {"bonbon.train", "bonbon.losses"}}
    for script, modules in wanted.items():
        found = set(package_modules(scripts / script, src))
        assert modules <= found, (script, modules - found)


def test_code_version_tracks_from_package_import_module_and_import_package_dot_module(tmp_path):
    """A script that imports a package module as ``from pkg import plots`` or a subpackage's module as
    ``import pkg.sub.mod`` runs those files (and ``pkg/sub/__init__.py``, and what they import inside a
    function): each is tracked, a module it does not import is not. Pins dropping the ``from pkg import
    name`` modules, the ``import a.b`` names, the parent packages' ``__init__`` files, or the walk into a
    found module's own imports."""
    from bonbon.rerun import code_version, package_modules

    root = tmp_path / "src"
    (root / "pkg" / "sub").mkdir(parents=True)
    files = {"pkg/__init__.py": "",
             "pkg/plots.py": "def draw():\n    from pkg.helper import h\n    return h()\n",
             "pkg/helper.py": "def h():\n    return 1\n", "pkg/sub/__init__.py": "Y = 1\n",
             "pkg/sub/mod.py": "Z = 1\n", "pkg/unused.py": "U = 1\n"}
    for name, text in files.items():
        (root / name).write_text(text)
    script = tmp_path / "script.py"
    script.write_text("import os\nimport pkg.sub.mod\nfrom pkg import plots\n\n"
                      "print(plots.draw(), pkg.sub.mod.Z)\n")
    found = package_modules(script, root, package="pkg")
    assert found == {"pkg": root / "pkg/__init__.py", "pkg.plots": root / "pkg/plots.py",
                     "pkg.helper": root / "pkg/helper.py", "pkg.sub": root / "pkg/sub/__init__.py",
                     "pkg.sub.mod": root / "pkg/sub/mod.py"}
    version = code_version(script, root, package="pkg")
    (root / "pkg/unused.py").write_text("U = 2\n")
    assert code_version(script, root, package="pkg") == version
    for name in ("pkg/plots.py", "pkg/helper.py", "pkg/sub/__init__.py", "pkg/sub/mod.py", "pkg/__init__.py"):
        (root / name).write_text(files[name] + "CHANGED = 1\n")
        changed = code_version(script, root, package="pkg")
        assert changed != version, name
        version = changed
    # one version in every process, whatever the order Python's string hashing gives the import sets
    command = ("import sys; from bonbon.rerun import code_version; "
               f"print(code_version({str(script)!r}, {str(root)!r}, package='pkg'))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    seen = {subprocess.run([sys.executable, "-c", command], env={**env, "PYTHONHASHSEED": str(seed)},
                           capture_output=True, text=True, check=True).stdout.strip() for seed in range(6)}
    assert seen == {version}
