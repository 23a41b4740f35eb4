"""Configuration checks that a JSON schema cannot express, and clear messages for those it can.

Snakemake's ``validate`` checks the schema and fills defaults; these functions run before any job so
that a bad config stops the workflow with the key that is wrong and why.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

TOY = "toy"
# the one statement of every key, bound and default; the package lives in the workflow's checkout
SCHEMA = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"


class ConfigError(ValueError):
    """A configuration value that cannot work; the message starts with the config key."""


def load_schema(schema_path: str | Path = SCHEMA) -> dict[str, Any]:
    import yaml

    return yaml.safe_load(Path(schema_path).read_text())


def schema_errors(config: dict, schema_path: str | Path = SCHEMA) -> list[str]:
    """Every schema violation of ``config`` as ``"config key a.b.c: what is wrong"``."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(load_schema(schema_path))
    messages = []
    for error in sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path)):
        key = ".".join(str(p) for p in error.absolute_path) or "(top level)"
        messages.append(f"config key {key}: {error.message}")
    return messages


def training_defaults(schema_path: str | Path = SCHEMA) -> dict[str, Any]:
    """The default of every training loop setting (the schema's ``definitions.training``); a block of
    settings (``lora``) is the mapping of its keys' defaults."""
    properties = load_schema(schema_path)["definitions"]["training"]["properties"]
    return {key: _default(spec) for key, spec in properties.items()}


def _default(spec: dict[str, Any]) -> Any:
    if "properties" in spec:
        return {**spec.get("default", {}), **{key: _default(sub) for key, sub in spec["properties"].items()}}
    return spec["default"]


def is_local_path(model: str) -> bool:
    """Whether a model reference names a local directory rather than a hub id.

    A hub id is ``name`` or ``org/name``; anything absolute, relative with ``.``/``~``, deeper than one
    slash, or existing on disk is a path.
    """
    return model.startswith(("/", ".", "~")) or model.count("/") > 1 or Path(model).exists()


def _unreadable_model(path: Path) -> str | None:
    """What keeps ``from_pretrained`` from reading a local model directory, or None."""
    try:
        values = json.loads((path / "config.json").read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        return f"has an unreadable config.json ({type(error).__name__}: {error})"
    if not isinstance(values, dict) or "model_type" not in values:
        return "has a config.json without model_type (not a transformers model config)"
    weights = [p for p in path.iterdir() if p.name.endswith((".safetensors", ".bin", ".safetensors.index.json"))]
    if not weights:
        return "has no weights (*.safetensors or *.bin)"
    return None


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
    for role in ("base", "reward", "judge"):
        model = config["models"].get(role)
        if model is not None and model != TOY and is_local_path(model):
            path = Path(model).expanduser()
            if not path.is_dir():
                problems.append(f"config key models.{role}: model directory {model!r} does not exist")
            elif not (path / "config.json").is_file():
                problems.append(f"config key models.{role}: {model!r} has no config.json (not a transformers model)")
            elif (problem := _unreadable_model(path)) is not None:
                problems.append(f"config key models.{role}: {model!r} {problem}")
    gen = config["generation"]
    if gen.get("backend") == "vllm" and config.get("device") == "cpu":
        problems.append("config key generation.backend: vllm runs on CUDA GPUs only, but device is 'cpu'")
    if gen["batch_size"] < max(config["n_values"]):
        problems.append(
            f"config key generation.batch_size: {gen['batch_size']} rows cannot hold the {max(config['n_values'])} "
            "samples of one prompt (max of n_values)"
        )
    if problems:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))


def hub_ids(config: dict[str, Any]) -> list[tuple[str, str, str]]:
    """``(config key, hub id, repo type)`` of every model and dataset the config loads from the Hub."""
    found = [
        (f"models.{role}", model, "model")
        for role in ("base", "reward", "judge")
        if (model := config["models"].get(role)) not in (None, TOY) and not is_local_path(model)
    ]
    for name, dataset in config["datasets"].items():
        path = dataset.get("path")
        if dataset["source"] == "hf" and path and not is_local_path(path):
            found.append((f"datasets.{name}.path", path, "dataset"))
    return found


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def check_hub_ids(
    config: dict[str, Any], api: Any = None, cache_dir: str | Path | None = None, offline: bool | None = None
) -> list[str]:
    """Before any job: every hub id of the config must name a readable repository.

    Online, the Hub is asked (``auth_check``; a model must also have a ``config.json``): a missing,
    private or gated repository is a ConfigError naming the config key. Where the Hub cannot be
    reached the id cannot be checked: that is returned as a warning, not an error (a login node may
    lack what the compute nodes have, or the reverse). With ``HF_HUB_OFFLINE`` set, the jobs can only
    read the local cache, so an id missing from it is an error.
    """
    ids = hub_ids(config)
    if not ids:
        return []
    from huggingface_hub import try_to_load_from_cache
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    offline = _hub_offline() if offline is None else offline
    problems, warnings = [], []
    for key, repo_id, repo_type in ids:
        where = f"config key {key}: hub {repo_type} {repo_id!r}"
        if offline:
            if not _in_cache(repo_id, repo_type, cache_dir, try_to_load_from_cache):
                problems.append(
                    f"{where} is not in the local Hugging Face cache and HF_HUB_OFFLINE is set; download it "
                    f"where the Hub is reachable (hf download {repo_id}"
                    f"{' --repo-type dataset' if repo_type == 'dataset' else ''}) or give a local directory"
                )
            continue
        if api is None:
            from huggingface_hub import HfApi

            api = HfApi()
        try:
            api.auth_check(repo_id, repo_type=repo_type)
            if repo_type == "model" and not api.file_exists(repo_id, "config.json"):
                problems.append(f"{where} has no config.json (not a transformers model)")
        except GatedRepoError:
            problems.append(f"{where} is gated: accept its terms on the Hub and log in (hf auth login)")
        except RepositoryNotFoundError:
            problems.append(f"{where} does not exist, or is private and no token with access is set")
        except Exception as error:  # no network, DNS, proxy, time-out: cannot tell
            warnings.append(f"{where} could not be checked ({type(error).__name__}: {error}); jobs need it")
    if problems:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))
    return warnings


def _in_cache(repo_id: str, repo_type: str, cache_dir: str | Path | None, lookup: Any) -> bool:
    if repo_type == "model":
        return isinstance(lookup(repo_id, "config.json", cache_dir=cache_dir), str)
    from huggingface_hub import constants

    # a dataset is cached as a repository folder of data files: any snapshot will do
    folder = Path(cache_dir or constants.HF_HUB_CACHE) / f"datasets--{repo_id.replace('/', '--')}" / "snapshots"
    return folder.is_dir() and any(folder.iterdir())


def model_role(config: dict[str, Any], role: str) -> str:
    """The ``models.*`` key whose model serves ``role``: the judge left unset (null) is the reward model
    (the workflow's ``model_dir`` in common.smk turns the key into a directory or hub id)."""
    return "reward" if role == "judge" and config["models"].get("judge") is None else role
