import copy

import pytest
import yaml
from snakemake.utils import validate

from bonbon.config import ConfigError, schema_errors
from bonbon.runs import expand_runs, run_name
from bonbon.theory import beta_star

from conftest import REPO

SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"


def base(**changes):
    config = {"datasets": {"toy": {"source": "toy"}, "hh": {"source": "toy"}}, "n_values": [2, 4, 8],
              "training": {"learning_rate": 1e-4, "max_length": 192}, "runs": []}
    config.update(changes)
    validate(config, str(SCHEMA))  # as the workflow does: fills every default
    return config


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
        ({"loss": "ipo", "beta": [0.1], "training": {"max_length": 64}}, r"runs\[0\].training: \['max_length'\]"),
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
        ({"loss": "bonbon", "beta": ["auto"], "alpha": [1.5]}, "runs.0.alpha.0", "greater than the maximum of 1"),
        ({"loss": "kto", "beta": [0.1]}, "runs.0.loss", "is not one of"),
    ],
)
def test_schema_rejects_bad_runs(run, key, message):
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config = copy.deepcopy(config)
    config["runs"] = [run]
    errors = schema_errors(config, SCHEMA)
    assert any(e.startswith(f"config key {key}:") and message in e for e in errors), errors
