"""Configuration checks that a JSON schema cannot express, and clear messages for those it can.

Snakemake's ``validate`` checks the schema and fills defaults; these functions run before any job so
that a bad config stops the workflow with the key that is wrong and why.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

TOY = "toy"
# the one statement of every key, bound and default: package data (pyproject.toml's package-data), so
# an installed package carries it; a path on disk (the package is installed as files, not zipped), which
# the workflow hands to Snakemake's validate
SCHEMA = Path(str(resources.files("bonbon") / "schemas" / "config.schema.yaml"))


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


def marked_keys(mark: str, schema: dict[str, Any] | None = None) -> tuple[str, ...]:
    """The dotted config keys whose schema carries ``mark: true``, in schema order (the package's schema
    by default; ``x-runtime``: changes how a job runs, not what it computes; ``x-resumable``: a training
    key a run's checkpoints are resumed across).

    A nested object's keys are dotted (``scoring.batch_size``), a list's entries' keys follow ``[]``
    (``runs[].training.log_every``); a ``$ref`` is followed with the keys beside it merged in, so a
    definition's marks show under every key that refers to it (``training``, ``sft.training``).
    """
    if schema is None:
        return _package_marked_keys(mark)
    return tuple(_marked(schema, schema, mark, ""))


@functools.cache
def _package_marked_keys(mark: str) -> tuple[str, ...]:
    return marked_keys(mark, load_schema())  # read once per process: rerun and train ask at import


def _marked(schema: dict, root: dict, mark: str, prefix: str) -> Iterator[str]:
    schema = _resolve(schema, root)
    for key, sub in schema.get("properties", {}).items():
        name = f"{prefix}.{key}" if prefix else key
        if _resolve(sub, root).get(mark) is True:
            yield name
        yield from _marked(sub, root, mark, name)
    if isinstance(schema.get("items"), dict):
        yield from _marked(schema["items"], root, mark, f"{prefix}[]")


def training_keys(mark: str, schema: dict[str, Any] | None = None) -> tuple[str, ...]:
    """The keys of a training block that carry ``mark`` (``log_every``), in schema order: the shared
    ``training`` block's, which ``sft.training`` and ``runs[].training`` share (one definition)."""
    return tuple(key.removeprefix("training.") for key in marked_keys(mark, schema)
                 if key.startswith("training."))


def _resolve(schema: dict, root: dict) -> dict:
    """Follow a local ``$ref`` (``#/definitions/...``) to the schema it names; keys beside the ``$ref``
    are merged in, ``properties`` key by key (``definitions.training`` adds only defaults to the
    types of ``definitions.training_options``)."""
    while isinstance(schema, dict) and "$ref" in schema:
        target: Any = root
        for part in schema["$ref"].lstrip("#/").split("/"):
            target = target[part]
        schema = _merged(target, {k: v for k, v in schema.items() if k != "$ref"})
    return schema


def _merged(base: dict, extra: dict) -> dict:
    out = {**base, **extra}
    if isinstance(base.get("properties"), dict) and isinstance(extra.get("properties"), dict):
        out["properties"] = {**base["properties"]}
        for key, sub in extra["properties"].items():
            below = base["properties"].get(key)
            out["properties"][key] = (_merged(below, sub) if isinstance(below, dict) and isinstance(sub, dict)
                                      else sub)
    return out


def _accepts(schema: dict, root: dict, value: Any) -> bool:
    """Whether ``value`` has a type (or enum/const value) that ``schema`` allows; values are not checked."""
    schema = _resolve(schema, root)
    if "anyOf" in schema:
        return any(_accepts(option, root, value) for option in schema["anyOf"])
    if "const" in schema:
        return value == schema["const"]
    if "enum" in schema:
        return value in schema["enum"]
    types = schema.get("type")
    if types is None:
        return True
    checks = {
        "string": lambda v: isinstance(v, str),
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
        "boolean": lambda v: isinstance(v, bool),
        "null": lambda v: v is None,
        "array": lambda v: isinstance(v, list),
        "object": lambda v: isinstance(v, dict),
    }
    return any(checks[t](value) for t in ([types] if isinstance(types, str) else types))


def _numeric_types(schema: dict, root: dict) -> set[str]:
    schema = _resolve(schema, root)
    if "anyOf" in schema:
        return set().union(*(_numeric_types(option, root) for option in schema["anyOf"]))
    types = schema.get("type", [])
    return {t for t in ([types] if isinstance(types, str) else types) if t in ("integer", "number")}


def _coerce(value: Any, schema: dict, root: dict) -> Any:
    schema = _resolve(schema, root)
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for key in value:
            sub = properties.get(key, extra if isinstance(extra, dict) else None)
            if sub is not None:
                value[key] = _coerce(value[key], sub, root)
        return value
    if isinstance(value, list):
        items = schema.get("items")
        return [_coerce(v, items, root) for v in value] if isinstance(items, dict) else value
    numeric = _numeric_types(schema, root)
    if isinstance(value, str) and not _accepts(schema, root, value):
        import yaml

        # --config gives strings ("[2,4]", "false"); YAML 1.1 reads 1e-4 (no dot) as a string
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError:
            return value
        if isinstance(parsed, str) and numeric:
            try:
                parsed = float(parsed)
            except ValueError:
                return value
        if (not isinstance(parsed, str) and _accepts(schema, root, parsed)
                or isinstance(parsed, float) and numeric):
            return _coerce(parsed, schema, root)
        return value
    # one spelling per number: 1 and 1.0 for a real-valued key, 1000.0 and 1000 for an integer one
    if isinstance(value, float) and "integer" in numeric and "number" not in numeric and value.is_integer():
        return int(value)
    if (isinstance(value, int) and not isinstance(value, bool) and "number" in numeric
            and "integer" not in numeric):
        return float(value)
    return value


def coerce_config(config: dict[str, Any], schema_path: str | Path = SCHEMA) -> dict[str, Any]:
    """Give every value the type the schema wants where it is written as text, in place; returns ``config``.

    Snakemake's ``--config`` passes strings (``n_values=[2,4]`` gives ``['2', '4']``, ``sft={enabled:
    false}`` gives ``'false'``), and YAML 1.1 reads ``1e-4`` (no dot) as a string: such a string is
    read as YAML, or as a number for a numeric key, when the schema does not take the string as it is.
    Numbers get one spelling (``1`` becomes ``1.0`` for a real-valued key, ``8.0`` becomes ``8`` for an
    integer one), so that a rewritten config compares equal. Anything else is left for the schema's
    messages.
    """
    schema = load_schema(schema_path)
    return _coerce(config, schema, schema)


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
    weights = [p for p in path.iterdir()
               if p.name.endswith((".safetensors", ".bin", ".safetensors.index.json"))]
    if not weights:
        return "has no weights (*.safetensors or *.bin)"
    return None


def check_config(config: dict[str, Any]) -> None:
    """Raise ConfigError for what the schema cannot see: missing files and models, bad combinations."""
    problems: list[str] = []
    for name, dataset in config["datasets"].items():
        key = f"datasets.{name}"
        if dataset["source"] in ("file", "templates"):
            path = dataset.get("path")
            if not path:
                problems.append(f"config key {key}.path: required when source is {dataset['source']!r}")
            elif not Path(path).is_file():
                problems.append(f"config key {key}.path: prompt file {path!r} does not exist")
        elif dataset["source"] == "hf":
            path = dataset.get("path")
            if not path:
                problems.append(f"config key {key}.path: required when source is 'hf' "
                                "(a hub id or a local directory)")
            elif is_local_path(path) and not Path(path).expanduser().is_dir():
                problems.append(f"config key {key}.path: local dataset directory {path!r} does not exist")
        elif dataset.get("path"):
            problems.append(f"config key {key}.path: only used with source 'file', 'templates' or 'hf', "
                            f"but source is {dataset['source']!r}")
    sft = config.get("sft", {})
    if sft.get("enabled", True) and sft.get("data", TOY) != TOY:
        target = config["datasets"].get(sft["data"])
        if target is None or target["source"] != "hf":
            problems.append(f"config key sft.data: {sft['data']!r} is neither 'toy' nor an hf dataset "
                            "of datasets")
    for role in ("base", "reward", "judge"):
        model = config["models"].get(role)
        if isinstance(model, dict):
            problems += _setting_problems(role, model)
            continue
        if model is not None and model != TOY and is_local_path(model):
            path = Path(model).expanduser()
            if path.is_file():
                problems.append(f"config key models.{role}: {model!r} is a file, not a model directory: "
                                "give the directory that holds its config.json, weights and tokenizer")
            elif not path.is_dir():
                problems.append(f"config key models.{role}: model directory {model!r} does not exist")
            elif not (path / "config.json").is_file():
                problems.append(f"config key models.{role}: {model!r} has no config.json "
                                "(not a transformers model)")
            elif (problem := _unreadable_model(path)) is not None:
                problems.append(f"config key models.{role}: {model!r} {problem}")
    gen = config["generation"]
    if gen.get("backend") == "vllm" and config.get("device") == "cpu":
        problems.append("config key generation.backend: vllm runs on CUDA GPUs only, but device is 'cpu'")
    if gen["batch_size"] < max(config["n_values"]):
        problems.append(
            f"config key generation.batch_size: {gen['batch_size']} rows cannot hold the "
            f"{max(config['n_values'])} samples of one prompt (max of n_values)"
        )
    defaults = training_defaults()  # the schema's; a run's block overrides the shared one key by key
    shared = {**defaults, **config.get("training", {})}
    blocks = [("training", shared), ("sft.training", {**defaults, **sft.get("training", {})})]
    blocks += [(f"runs[{i}].training", {**shared, **run["training"]})
               for i, run in enumerate(config.get("runs") or []) if run.get("training")]
    for key, block in blocks:
        max_length, max_prompt_length = block["max_length"], block["max_prompt_length"]
        if max_prompt_length >= max_length:
            problems.append(
                f"config key {key}.max_prompt_length: {max_prompt_length} leaves no room for the response in "
                f"{key}.max_length {max_length}: make it smaller than max_length (the paper: 256 of 512)"
            )
    toy = config.get("toy", {})
    uses_toy = any(d["source"] == TOY for d in config["datasets"].values())
    if uses_toy and "n_prompts" in toy and "eval_fraction" in toy:
        n_eval = round(toy["eval_fraction"] * toy["n_prompts"])  # as bonbon.toy.make_prompt_set splits
        if n_eval == 0 or n_eval == toy["n_prompts"]:
            split = "eval" if n_eval == 0 else "train"
            problems.append(f"config key toy.eval_fraction: {toy['eval_fraction']} of {toy['n_prompts']} "
                            f"prompts leaves no {split} prompts: choose a share that puts some in each "
                            "(e.g. 0.25)")
    if problems:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))


def _setting_problems(role: str, model: dict[str, Any]) -> list[str]:
    """What is wrong with a ``models.<role>`` mapping: a GGUF file (which must exist, and holds a causal
    LM: the policy's, not a reward model's) or a reward function (reward and judge only)."""
    from bonbon.gguf_import import GGUFError, gguf_file, is_gguf

    key = f"models.{role}"
    if is_gguf(model):
        if role != "base":
            return [f"config key {key}: a GGUF file holds a language model, not a one-logit reward model; "
                    "give a reward model directory or hub id, or a reward function ({function: ...})"]
        try:
            gguf_file(model, key)
        except GGUFError as error:
            return [str(error)]
        return []
    if role == "base":
        return [f"config key {key}: a reward function ({model.get('function')!r}) cannot be the policy; "
                "give 'toy', a hub id, a local directory or {gguf: ...}"]
    return []  # reward functions: check_reward_functions imports and probes them


def check_reward_functions(config: dict[str, Any]) -> None:
    """Before any job: every reward function of ``models.reward`` / ``models.judge`` imports and scores a
    probe batch with finite floats, one per row, the same on a repeat (``bonbon.reward_functions``)."""
    from bonbon.reward_functions import RewardFunctionError, check_reward_function, is_reward_function

    problems = []
    for role in ("reward", "judge"):
        setting = config["models"].get(role)
        if is_reward_function(setting):
            try:
                check_reward_function(setting, f"models.{role}")
            except RewardFunctionError as error:
                problems.append(str(error))
    if problems:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))


def check_prompt_files(config: dict[str, Any]) -> None:
    """Before any job: read every prompt file (``source: file``) as the prompts job will, and split it.

    Raises ConfigError naming the dataset's key for a file that cannot be read (with its row), and for
    one that leaves no train or no eval prompts (the evaluation samples the eval prompts).
    """
    from bonbon.prompts import PromptFileError, build_prompt_table, read_prompt_file
    from bonbon.templates import read_template_prompts

    problems = []
    for name, dataset in config["datasets"].items():
        if dataset["source"] not in ("file", "templates") or not dataset.get("path") \
                or not Path(dataset["path"]).is_file():
            continue  # check_config names what is missing
        try:
            read = read_template_prompts if dataset["source"] == "templates" else read_prompt_file
            source = read(dataset["path"])
        except PromptFileError as error:
            problems.append(f"config key datasets.{name}.path: {error}")
            continue
        table, counts = build_prompt_table(source, dataset.get("eval_fraction", 0.2), dataset.get("seed", 0),
                                           dataset.get("max_prompts"))
        fraction = dataset.get("eval_fraction", 0.2)
        for split in ("train", "eval"):
            if counts[split] > 0:
                continue
            if "split" in source.columns:
                how, fix = f"its split column has no {split!r} rows", f"mark some rows split={split}"
            elif split == "eval":
                how, fix = f"eval_fraction {fraction} puts none of them there", "raise eval_fraction"
            else:
                how, fix = f"eval_fraction {fraction} takes them all", "lower eval_fraction"
            need = ("generation samples the train prompts" if split == "train"
                    else "the evaluation samples the eval ones")
            problems.append(f"config key datasets.{name}: no {split} prompts: of the {len(table)} prompts of "
                            f"{dataset['path']}, {how}, and {need}: {fix}")
    if problems:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))


# model_max_length that transformers gives a tokenizer that does not set one (1e30)
_NO_MAX_LENGTH = 10**9


def check_models(config: dict[str, Any], hub_online: bool = False) -> None:
    """Before any job: the base model must be a causal LM with an EOS token, the reward model a
    sequence classifier with one label and a tokenizer with a finite ``model_max_length``.

    Local directories are read with transformers (config and tokenizer only, not the weights); hub
    ids only from the local cache, or from the Hub when ``hub_online`` (check_hub_ids reached it).
    The toy world's models are built by the workflow and not checked. Raises ConfigError naming the
    key, what is wrong and the fix.
    """
    # a GGUF file is checked when imported, a reward function by check_reward_functions
    roles = [(role, model) for role in ("base", "reward")
             if (model := config["models"][role]) != TOY and isinstance(model, str)]
    if not roles:
        return
    from transformers import AutoConfig, AutoTokenizer
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES,
    )

    problems = []
    for role, model in roles:
        local = is_local_path(model)
        if local and not Path(model).expanduser().is_dir():
            continue  # check_config names it
        where = f"config key models.{role}: {model!r}"
        options = {} if local or hub_online else {"local_files_only": True}
        try:
            model_config = AutoConfig.from_pretrained(model, **options)
        except Exception as error:
            if local:
                problems.append(f"{where}: transformers cannot read its config.json "
                                f"({type(error).__name__}: {error})")
            continue  # a hub id that is not at hand: check_hub_ids reports it
        model_type = getattr(model_config, "model_type", "?")
        architectures = list(getattr(model_config, "architectures", None) or [])
        if role == "base":
            if model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
                problems.append(f"{where} is a {model_type} model, which has no causal-LM form "
                                "(AutoModelForCausalLM cannot load it): the base policy must be a "
                                "decoder-only language model, such as EleutherAI/pythia-2.8b")
                continue
            if architectures and not any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in architectures):
                problems.append(f"{where} holds a {architectures[0]}, not a causal LM: loaded as the policy "
                                "it would get a new, untrained language-model head; give a causal LM "
                                "checkpoint")
        else:
            if model_type not in MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES:
                problems.append(f"{where} is a {model_type} model, which has no sequence-classification "
                                "form: the reward model must be a classifier with one label, such as "
                                "OpenAssistant/reward-model-deberta-v3-large-v2")
                continue
            if architectures and not any(a.endswith("ForSequenceClassification") for a in architectures):
                problems.append(f"{where} holds a {architectures[0]}, not a reward model: loaded as one it "
                                "would get a new, untrained 2-label head; give a "
                                "...ForSequenceClassification checkpoint with one label")
            elif model_config.num_labels != 1:
                problems.append(f"{where} has {model_config.num_labels} output labels "
                                f"({sorted(model_config.id2label.values())}); a reward model has one, whose "
                                "logit is the reward: give a one-label reward model")
        try:
            tokenizer = AutoTokenizer.from_pretrained(model, **options)
        except Exception as error:
            problems.append(f"{where}: transformers cannot load its tokenizer "
                            f"({type(error).__name__}: {error}); "
                            "the directory needs tokenizer.json or the files of a slow tokenizer")
            continue
        if role == "base" and tokenizer.eos_token_id is None:
            problems.append(f"{where}: its tokenizer has no EOS token, so no response could end and every "
                            "sample would run to generation.max_new_tokens; set eos_token in its "
                            "tokenizer_config.json (Pythia's is <|endoftext|>)")
        if role == "reward" and not tokenizer.model_max_length < _NO_MAX_LENGTH:
            limit = getattr(model_config, "max_position_embeddings", None)
            problems.append(f"{where}: its tokenizer has no usable model_max_length "
                            f"({tokenizer.model_max_length:.3g}),"
                            " so long (prompt, response) pairs could not be cut to fit; set model_max_length "
                            "in its tokenizer_config.json to the model's input limit"
                            + (f" (max_position_embeddings is {limit})" if limit else ""))
    if problems:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))


def hub_ids(config: dict[str, Any]) -> list[tuple[str, str, str]]:
    """``(config key, hub id, repo type)`` of every model and dataset the config loads from the Hub."""
    found = [
        (f"models.{role}", model, "model")
        for role in ("base", "reward", "judge")
        if isinstance(model := config["models"].get(role), str) and model != TOY and not is_local_path(model)
    ]
    for name, dataset in config["datasets"].items():
        path = dataset.get("path")
        if dataset["source"] == "hf" and path and not is_local_path(path):
            found.append((f"datasets.{name}.path", path, "dataset"))
    return found


def hub_offline() -> bool:
    """Whether HF_HUB_OFFLINE asks for the local cache only."""
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

    offline = hub_offline() if offline is None else offline
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
            warnings.append(
                f"{where} could not be checked: the Hub did not answer ({type(error).__name__}: {error}). "
                f"Jobs need it: where they run without network, download it first (hf download {repo_id}"
                f"{' --repo-type dataset' if repo_type == 'dataset' else ''}) and set HF_HUB_OFFLINE=1 so "
                "that it is read from the local cache, or give a local directory"
            )
    if problems:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))
    return warnings


def _in_cache(repo_id: str, repo_type: str, cache_dir: str | Path | None, lookup: Any) -> bool:
    if repo_type == "model":
        return isinstance(lookup(repo_id, "config.json", cache_dir=cache_dir), str)
    from huggingface_hub import constants

    # a dataset is cached as a repository folder of data files: any snapshot will do
    folder = (Path(cache_dir or constants.HF_HUB_CACHE) / f"datasets--{repo_id.replace('/', '--')}"
              / "snapshots")
    return folder.is_dir() and any(folder.iterdir())


def model_role(config: dict[str, Any], role: str) -> str:
    """The ``models.*`` key whose model serves ``role``: the judge left unset (null) is the reward model
    (bonbon.model_refs turns the key into a directory or hub id)."""
    return "reward" if role == "judge" and config["models"].get("judge") is None else role
