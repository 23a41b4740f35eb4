"""What Snakemake reruns and refuses, and bad input caught before the first job (issue 14)."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bonbon.config import coerce_config, schema_errors

from conftest import REPO

SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
DEFAULT = yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def snakemake(workdir: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """The Snakemake CLI on the repository's Snakefile, as a user types it (no --configfile)."""
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir), "--cores", "2",
           *args]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
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
    text = (REPO / "config" / "config.yaml").read_text().replace("learning_rate: 0.0001", "learning_rate: 1e-4")
    config = yaml.safe_load(text)
    assert config["training"]["learning_rate"] == "1e-4"  # what PyYAML (YAML 1.1) makes of it
    assert coerce_config(config, SCHEMA)["training"]["learning_rate"] == 1e-4


@pytest.mark.parametrize(
    ("override", "present", "absent"),
    [
        ("n_values=[2,4]", ["results/pairs/toy/n2.parquet", "results/pairs/toy/n4.parquet"],
         ["results/pairs/toy/n8.parquet"]),
        ("sft={enabled: false}", ["results/pairs/toy/n8.parquet"], ["results/models/sft/"]),
        ("shards={generate: 3, sample: 2}", ["results/generate/toy/shards/3-of-3.parquet",
                                             "results/samples/toy-reference/shards/2-of-2.parquet"],
         ["results/generate/toy/shards/1-of-1.parquet"]),
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
