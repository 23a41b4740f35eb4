"""Configuration checks that a JSON schema cannot express, and clear messages for those it can.

Snakemake's ``validate`` checks the schema and fills defaults; these functions run before any job so
that a bad config stops the workflow with the key that is wrong and why.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

TOY = "toy"


class ConfigError(ValueError):
    """A configuration value that cannot work; the message starts with the config key."""


def schema_errors(config: dict, schema_path: str | Path) -> list[str]:
    """Every schema violation of ``config`` as ``"config key a.b.c: what is wrong"``."""
    import jsonschema
    import yaml

    schema = yaml.safe_load(Path(schema_path).read_text())
    validator = jsonschema.Draft202012Validator(schema)
    messages = []
    for error in sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path)):
        key = ".".join(str(p) for p in error.absolute_path) or "(top level)"
        messages.append(f"config key {key}: {error.message}")
    return messages


def is_local_path(model: str) -> bool:
    """Whether a model reference names a local directory rather than a hub id.

    A hub id is ``name`` or ``org/name``; anything absolute, relative with ``.``/``~``, deeper than one
    slash, or existing on disk is a path.
    """
    return model.startswith(("/", ".", "~")) or model.count("/") > 1 or Path(model).exists()


def check_config(config: dict[str, Any]) -> None:
    """Raise ConfigError for what the schema cannot see: missing files and models, bad combinations."""
    problems: list[str] = []
    for name, dataset in config["datasets"].items():
        key = f"datasets.{name}"
        if dataset["source"] == "file":
            path = dataset.get("path")
            if not path:
                problems.append(f"config key {key}.path: required when source is 'file'")
            elif not Path(path).is_file():
                problems.append(f"config key {key}.path: prompt file {path!r} does not exist")
        elif dataset["source"] == "hf":
            path = dataset.get("path")
            if not path:
                problems.append(f"config key {key}.path: required when source is 'hf' (a hub id or a local directory)")
            elif is_local_path(path) and not Path(path).expanduser().is_dir():
                problems.append(f"config key {key}.path: local dataset directory {path!r} does not exist")
        elif dataset.get("path"):
            problems.append(f"config key {key}.path: only used with source 'file' or 'hf', but source is {dataset['source']!r}")
    sft = config.get("sft", {})
    if sft.get("enabled", True) and sft.get("data", TOY) != TOY:
        target = config["datasets"].get(sft["data"])
        if target is None or target["source"] != "hf":
            problems.append(f"config key sft.data: {sft['data']!r} is neither 'toy' nor an hf dataset of datasets")
    for role in ("base", "reward"):
        model = config["models"][role]
        if model != TOY and is_local_path(model):
            path = Path(model).expanduser()
            if not path.is_dir():
                problems.append(f"config key models.{role}: model directory {model!r} does not exist")
            elif not (path / "config.json").is_file():
                problems.append(f"config key models.{role}: {model!r} has no config.json (not a transformers model)")
    gen = config["generation"]
    if gen["batch_size"] < max(config["n_values"]):
        problems.append(
            f"config key generation.batch_size: {gen['batch_size']} rows cannot hold the {max(config['n_values'])} "
            "samples of one prompt (max of n_values)"
        )
    if problems:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))


def model_dir(config: dict, role: str) -> str:
    """Where a model is loaded from: the toy world's directory for ``toy``, else the configured string."""
    model = config["models"][role]
    return f"results/toy/{role}_model" if model == TOY else model
