import copy

import pytest
import yaml

from bonbon.config import ConfigError, check_config, schema_errors

from conftest import REPO, run_workflow

SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
DEFAULT = yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def test_default_config_is_valid():
    assert schema_errors(DEFAULT, SCHEMA) == []


@pytest.mark.parametrize(
    ("change", "key", "message"),
    [
        ({"unknown_key": 1}, "(top level)", "'unknown_key' was unexpected"),
        ({"n_values": [1, 4]}, "n_values.0", "less than the minimum of 2"),
        ({"n_values": [2, 4, 4]}, "n_values", "non-unique"),
        ({"n_values": []}, "n_values", "should be non-empty"),
        ({"datasets": {}}, "datasets", "should be non-empty"),
        ({"generation": {"temperature": -1}}, "generation.temperature", "less than or equal to the minimum of 0"),
        ({"generation": {"max_new_tokens": "many"}}, "generation.max_new_tokens", "is not of type 'integer'"),
        ({"toy": {"n_prompts": 0}}, "toy.n_prompts", "less than the minimum of 1"),
        ({"datasets": {"x": {"source": "web"}}}, "datasets.x.source", "is not one of"),
    ],
)
def test_schema_errors_name_the_key(change, key, message):
    config = copy.deepcopy(DEFAULT)
    config.update(change)
    errors = schema_errors(config, SCHEMA)
    assert any(e.startswith(f"config key {key}:") and message in e for e in errors), errors


def filled(**changes):
    config = copy.deepcopy(DEFAULT)
    config["datasets"]["toy"].setdefault("eval_fraction", 0.2)
    config.update(changes)
    return config


def test_semantic_checks(tmp_path):
    with pytest.raises(ConfigError, match=r"models.base: model directory '\./no/such/model' does not exist"):
        check_config(filled(models={"base": "./no/such/model", "reward": "toy"}))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="models.reward: .* has no config.json"):
        check_config(filled(models={"base": "toy", "reward": str(tmp_path / "empty")}))
    with pytest.raises(ConfigError, match=r"datasets.hh.path: prompt file 'missing.csv' does not exist"):
        check_config(filled(datasets={"hh": {"source": "file", "path": "missing.csv"}}))
    with pytest.raises(ConfigError, match="generation.batch_size: 4 rows cannot hold"):
        check_config(filled(generation={**DEFAULT["generation"], "batch_size": 4}))
    # a hub id is not a local path: it is left to from_pretrained
    check_config(filled(models={"base": "EleutherAI/pythia-2.8b", "reward": "toy"}))


def test_bad_config_stops_the_workflow_before_any_job(tmp_path):
    config = copy.deepcopy(DEFAULT)
    config["generation"]["temperature"] = -1
    config["n_values"] = [2, 2]
    result = run_workflow(tmp_path, config, check=False)
    assert result.returncode != 0
    assert "config key generation.temperature" in result.stderr and "config key n_values" in result.stderr
    assert not (tmp_path / "results").exists()


def test_paper_config_is_valid_and_its_dag_builds_offline(tmp_path):
    config = yaml.safe_load((REPO / "config" / "hh-pythia28.yaml").read_text())
    assert schema_errors(config, SCHEMA) == []
    result = run_workflow(tmp_path, config, "-n", "--quiet", "rules")
    for rule in ("original_pairs", "sft", "generate", "score", "ref_logps", "train", "sample", "summary"):
        assert rule in result.stdout
    assert not (tmp_path / "results").exists()
