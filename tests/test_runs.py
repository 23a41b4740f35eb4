import copy

import pytest
import yaml
from snakemake.utils import validate

from bonbon.config import SCHEMA, ConfigError, schema_errors
from bonbon.runs import expand_runs, is_lora_run, replicates, run_name
from bonbon.theory import beta_star

from conftest import REPO
from helpers.configs import base


def test_grid_expansion_names_and_training_blocks():
    runs = expand_runs(base(runs=[
        {"loss": "bonbon", "beta": ["auto"], "alpha": [0.005, 0.5], "datasets": ["toy"], "n": [8]},
        {"loss": "dpo", "beta": [0.1, 0.5], "datasets": ["hh"], "training": {"learning_rate": 1e-5}},
    ]))
    assert sorted(runs) == sorted([
        "toy-n8-bonbon-betaauto-alpha0.005", "toy-n8-bonbon-betaauto-alpha0.5",
        "hh-n2-dpo-beta0.1", "hh-n4-dpo-beta0.1", "hh-n8-dpo-beta0.1",
        "hh-n2-dpo-beta0.5", "hh-n4-dpo-beta0.5", "hh-n8-dpo-beta0.5",
    ])
    bonbon = runs["toy-n8-bonbon-betaauto-alpha0.5"]
    # beta auto is resolved once, here: a number, flagged as automatic
    assert bonbon["beta"] == beta_star(8) == pytest.approx(0.0275482, abs=1e-7) and bonbon["beta_auto"]
    assert bonbon["training"]["beta"] == beta_star(8) and bonbon["training"]["alpha"] == 0.5
    assert bonbon["training"]["learning_rate"] == 1e-4 and bonbon["training"]["max_length"] == 192
    assert bonbon["training"]["warmup_steps"] == 150  # the schema's default
    assert "label_smoothing" not in bonbon["training"]
    dpo = runs["hh-n4-dpo-beta0.5"]
    assert dpo["n"] == 4 and dpo["dataset"] == "hh" and dpo["beta"] == 0.5 and not dpo["beta_auto"]
    assert dpo["training"]["learning_rate"] == 1e-5 and dpo["training"]["beta"] == 0.5
    assert dpo["training"]["label_smoothing"] == 0.0 and dpo["training"]["reference_free"] is False
    assert run_name("toy", 8, "ipo", 0.25) == "toy-n8-ipo-beta0.25"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"loss": "dpo", "beta": ["auto"]}, r"runs\[0\].beta: 'auto'"),
        ({"loss": "ipo", "beta": [0.1], "n": [16]}, r"runs\[0\].n: \[16\] not in n_values"),
        ({"loss": "ipo", "beta": [0.1], "datasets": ["nope"]}, r"runs\[0\].datasets: unknown dataset"),
        ({"loss": "ipo", "beta": [0.1], "training": {"max_length": 64}},
         r"runs\[0\].training: \['max_length'\]"),
    ],
)
def test_run_errors_name_the_key(spec, message):
    with pytest.raises(ConfigError, match=message):
        expand_runs(base(runs=[spec]))


def test_duplicate_runs_are_an_error():
    with pytest.raises(ConfigError, match="declared twice"):
        expand_runs(base(runs=[{"loss": "ipo", "beta": [0.1]}, {"loss": "ipo", "beta": [0.1], "n": [2]}]))


@pytest.mark.parametrize(
    ("run", "key", "message"),
    [
        ({"loss": "ipo", "beta": [0]}, "runs.0.beta.0", "is not valid under any of the given schemas"),
        ({"loss": "ipo", "beta": [-1.0]}, "runs.0.beta.0", "is not valid"),
        ({"loss": "bonbon", "beta": ["auto"], "alpha": [1.5]}, "runs.0.alpha.0",
         "greater than the maximum of 1"),
        ({"loss": "kto", "beta": [0.1]}, "runs.0.loss", "is not one of"),
    ],
)
def test_schema_rejects_bad_runs(run, key, message):
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config = copy.deepcopy(config)
    config["runs"] = [run]
    errors = schema_errors(config, SCHEMA)
    assert any(e.startswith(f"config key {key}:") and message in e for e in errors), errors


LORA_DEFAULTS = {"enabled": False, "r": 8, "alpha": 16.0, "dropout": 0.0,
                 "target_modules": ["query_key_value", "dense"]}


def test_lora_runs_get_their_own_names_and_inherit_the_shared_lora_block():
    shared = {"enabled": False, "r": 16, "alpha": 32}
    config = base(training={"learning_rate": 1e-4, "max_length": 192, "lora": dict(shared)}, runs=[
        {"loss": "ipo", "beta": [0.1], "datasets": ["toy"], "n": [8]},
        {"loss": "ipo", "beta": [0.1], "datasets": ["toy"], "n": [8],
         "training": {"lora": {"enabled": True}}},
        {"loss": "ipo", "beta": [0.1], "datasets": ["toy"], "n": [8], "tag": "r4",
         "training": {"lora": {"enabled": True, "r": 4}, "learning_rate": 1e-3}},
    ])
    # the schema's lora defaults fill the shared block key by key, never a run's own block (no defaults
    # there: they would override the shared r 16 and alpha 32)
    assert config["training"]["lora"] == {**LORA_DEFAULTS, **shared}
    assert config["runs"][1]["training"] == {"lora": {"enabled": True}}
    assert config["runs"][2]["training"]["lora"] == {"enabled": True, "r": 4}
    runs = expand_runs(config)
    assert sorted(runs) == ["toy-n8-ipo-beta0.1", "toy-n8-ipo-beta0.1-lora", "toy-n8-ipo-beta0.1-lora-r4"]
    assert runs["toy-n8-ipo-beta0.1"]["training"]["lora"] == {**LORA_DEFAULTS, **shared}
    # keeps r 16 and alpha 32
    assert runs["toy-n8-ipo-beta0.1-lora"]["training"]["lora"] == {**LORA_DEFAULTS, **shared, "enabled": True}
    tagged = runs["toy-n8-ipo-beta0.1-lora-r4"]["training"]
    assert (tagged["lora"] == {**LORA_DEFAULTS, "enabled": True, "r": 4, "alpha": 32}
            and tagged["learning_rate"] == 1e-3)
    assert tagged["warmup_steps"] == 150 and tagged["report_to"] == "none"  # the schema's defaults
    assert [is_lora_run(r) for r in sorted(runs)] == [False, True, True]
    assert is_lora_run("toy-n8-ipo-beta0.1-lora-step20") and not is_lora_run("toy-n8-ipo-beta0.1-loraX")
    # LoRA switched on for every run in the shared block: all names say so, none collide
    every = expand_runs(base(training={"lora": {"enabled": True}},
                             runs=[{"loss": "dpo", "beta": [0.1], "n": [2]}]))
    assert sorted(every) == ["hh-n2-dpo-beta0.1-lora", "toy-n2-dpo-beta0.1-lora"]
    assert every["toy-n2-dpo-beta0.1-lora"]["training"]["lora"] == {**LORA_DEFAULTS, "enabled": True}
    with pytest.raises(ConfigError, match="declared twice .*'tag'"):
        expand_runs(base(runs=[
            {"loss": "ipo", "beta": [0.1], "training": {"lora": {"enabled": True, "r": 4}}},
            {"loss": "ipo", "beta": [0.1], "training": {"lora": {"enabled": True, "r": 8}}}]))


def test_lora_and_tracker_defaults_come_from_the_schema():
    config = base(sft={"training": {}}, runs=[{"loss": "ipo", "beta": [0.1], "n": [2], "datasets": ["toy"]}])
    for block in (config["training"], config["sft"]["training"]):
        assert block["lora"] == LORA_DEFAULTS
        assert (block["report_to"], block["tracker_dir"], block["tracker_project"]) == ("none", None,
                                                                                        "bonbon")
    assert config["runs"][0]["training"] == {}
    assert list(expand_runs(config)) == ["toy-n2-ipo-beta0.1"]  # no -lora


@pytest.mark.parametrize(
    ("training", "key", "message"),
    [
        ({"lora": {"rank": 8}}, "training.lora", "Additional properties are not allowed"),
        ({"lora": {"r": 0}}, "training.lora.r", "less than the minimum of 1"),
        ({"lora": {"target_modules": []}}, "training.lora.target_modules", "is not valid"),
        ({"report_to": "tensorbord"}, "training.report_to", "is not valid"),
        ({"report_to": ["tensorboard", "wandb"], "tracker_dir": "tb"}, None, None),
    ],
)
def test_schema_checks_lora_and_tracker_keys(training, key, message):
    config = copy.deepcopy(yaml.safe_load((REPO / "config" / "config.yaml").read_text()))
    config["training"].update(training)
    errors = schema_errors(config, SCHEMA)
    if key is None:
        assert errors == []
    else:
        assert any(e.startswith(f"config key {key}:") and message in e for e in errors), errors


def test_schema_rejects_a_tag_that_reads_as_a_checkpoint():
    config = copy.deepcopy(yaml.safe_load((REPO / "config" / "config.yaml").read_text()))
    config["runs"] = [{"loss": "ipo", "beta": [0.1], "tag": "step20"}]
    assert any(e.startswith("config key runs.0.tag:") for e in schema_errors(config, SCHEMA))


def test_checkpoint_requests_at_the_boundaries():
    """A requested step equal to the final step is the final model (skipped, not an error); fractions alone
    take the nearest snapshot before the end (a tie to the earlier one, 1.0 to the last intermediate);
    snapshots at step 0 or the end are no intermediate checkpoints. Pins '<=' against the final step,
    the tie rule, and snapshots at the end counted."""
    from bonbon.runs import checkpoint_steps

    assert checkpoint_steps({"steps": [60], "every": 20}, 60, [0, 20, 40, 60]) == [20, 40]
    assert checkpoint_steps({"steps": [40, 60, 80]}, 60, [20, 40, 60]) == [40]
    assert checkpoint_steps({"fractions": [0.25, 0.5, 1.0]}, 60, [20, 40, 60]) == [20, 40]
    assert checkpoint_steps({"fractions": [0.5]}, 60, [20, 40, 60]) == [20]  # 30 is 10 from both
    assert checkpoint_steps({"fractions": [0.6]}, 60, [20, 40, 60]) == [40]
    assert checkpoint_steps({"fractions": [0.5]}, 60, [0, 60]) == []  # no intermediate snapshot at all
    assert checkpoint_steps({"every": 30}, 60, [30, 60]) == [30]


def test_fractions_only_need_snapshots_too():
    """``checkpoints: {fractions: [...]}`` with ``snapshot_every: 0`` is a config error naming the run, like
    steps; without any request nothing is checked; null snapshot_every means checkpoint_every."""
    from bonbon.runs import check_checkpoints, snapshot_interval

    runs = {"r": {"training": {"checkpoint_every": 20, "snapshot_every": 0}}}
    with pytest.raises(ConfigError, match="run r writes no snapshots"):
        check_checkpoints({"evaluation": {"checkpoints": {"fractions": [0.5]}}}, runs)
    check_checkpoints({"evaluation": {"checkpoints": {"every": None, "steps": [], "fractions": []}}}, runs)
    assert snapshot_interval({"checkpoint_every": 20, "snapshot_every": None}) == 20
    assert snapshot_interval({"checkpoint_every": 20, "snapshot_every": 8}) == 8
    # a run entry's own checkpoints win over the evaluation block's
    runs = {"r": {"training": {"checkpoint_every": 20}, "checkpoints": {"steps": [30]}}}
    with pytest.raises(ConfigError,
                       match=r"checkpoints.steps: 30 is not a multiple of run r's snapshot interval 20"):
        check_checkpoints({"evaluation": {"checkpoints": {"steps": [40]}}}, runs)


def test_a_list_of_seeds_replicates_every_run_of_its_entry():
    runs = expand_runs(base(training={"learning_rate": 1e-4, "max_length": 192, "seed": [0, 1, 2]}, runs=[
        {"loss": "ipo", "beta": ["auto"], "datasets": ["toy"], "n": [8]},
        {"loss": "dpo", "beta": [0.1], "datasets": ["toy"], "n": [8], "training": {"seed": 5}},
    ]))
    assert list(runs) == [f"toy-n8-ipo-betaauto-seed{s}" for s in (0, 1, 2)] + ["toy-n8-dpo-beta0.1"]
    for s in (0, 1, 2):
        run = runs[f"toy-n8-ipo-betaauto-seed{s}"]
        assert run["seed"] == s and run["training"]["seed"] == s and run["base_run"] == "toy-n8-ipo-betaauto"
        assert run["training"]["beta"] == beta_star(8)
    # an entry's own single seed keeps the plain name (nothing of a one-seed config is renamed)
    assert runs["toy-n8-dpo-beta0.1"]["training"]["seed"] == 5 and runs["toy-n8-dpo-beta0.1"]["seed"] == 5
    assert replicates(runs)["toy-n8-ipo-betaauto-seed2"] == {"base_run": "toy-n8-ipo-betaauto", "seed": 2}
    one = expand_runs(base(training={"seed": [7]}, runs=[{"loss": "ipo", "beta": [0.1], "datasets": ["toy"],
                                                          "n": [2]}]))
    assert list(one) == ["toy-n2-ipo-beta0.1"] and one["toy-n2-ipo-beta0.1"]["training"]["seed"] == 7


def test_default_runs_keep_their_names_and_seed():
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    validate(config, str(SCHEMA))
    runs = expand_runs(config)
    assert all("seed" not in name for name in runs) and len(runs) == 11
    assert {run["training"]["seed"] for run in runs.values()} == {0}
    assert all(run["base_run"] == name for name, run in runs.items())


def test_seeds_overlay_trains_three_seeds_of_the_n8_runs():
    from snakemake.utils import update_config

    # as `--configfile config/config.yaml config/seeds-n8.yaml` merges them
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    update_config(config, yaml.safe_load((REPO / "config" / "seeds-n8.yaml").read_text()))
    validate(config, str(SCHEMA))
    runs = expand_runs(config)
    assert len(runs) == 15 and {run["n"] for run in runs.values()} == {8}
    assert sorted({run["seed"] for run in runs.values()}) == [0, 1, 2]
    grid = {run["base_run"] for run in runs.values()}
    assert grid == {"toy-n8-bonbon-betaauto-alpha0.005", "toy-n8-bonbon-betaauto-alpha0.2",
                    "toy-n8-bonbon-betaauto-alpha1", "toy-n8-ipo-betaauto", "toy-n8-dpo-beta0.1"}
    dpo = runs["toy-n8-dpo-beta0.1-seed1"]["training"]
    assert dpo["learning_rate"] == 3e-4 and dpo["max_steps"] == 24 and dpo["seed"] == 1
    # everything else is the default's: the same world, samples and evaluation
    default = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    validate(default, str(SCHEMA))
    assert {k: v for k, v in config.items() if k not in ("training", "runs")} == \
        {k: v for k, v in default.items() if k not in ("training", "runs")}
    assert {**config["training"], "seed": 0} == default["training"]


def test_default_warmups_dpo_keeps_its_own():
    """BoNBoN and IPO warm up for 20 steps (chosen on the validation loss, docs/toy-sweep.md); DPO keeps
    the 10 of its own sweep, in the default and in the seeds overlay, which inherits the shared block."""
    from snakemake.utils import update_config

    default = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    seeds = copy.deepcopy(default)
    update_config(seeds, yaml.safe_load((REPO / "config" / "seeds-n8.yaml").read_text()))
    for config in (default, seeds):
        validate(config, str(SCHEMA))
        warmups: dict[str, set[int]] = {}
        for run in expand_runs(config).values():
            warmups.setdefault(run["loss"], set()).add(run["training"]["warmup_steps"])
        assert warmups == {"bonbon": {20}, "ipo": {20}, "dpo": {10}}


@pytest.mark.parametrize(
    ("change", "key", "message"),
    [
        ({"training": {"seed": [1, 1]}}, "training.seed", "is not valid under any of the given schemas"),
        ({"training": {"seed": []}}, "training.seed", "is not valid under any of the given schemas"),
        ({"sft": {"training": {"seed": [0, 1]}}}, "sft.training.seed", "is not of type 'integer'"),
    ],
)
def test_schema_checks_seed_lists(change, key, message):
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config.update(change)
    errors = schema_errors(config, SCHEMA)
    assert any(e.startswith(f"config key {key}:") and message in e for e in errors), errors
