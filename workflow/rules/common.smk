# Helpers, config validation and wildcard constraints shared by every stage.
import os
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

# Jobs import the package from this checkout, also in a conda env (--use-conda) that holds only the
# dependencies, and on a cluster node, where each job evaluates this file again.
SRC = str(Path(workflow.basedir) / "src")
sys.path.insert(0, SRC)
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (SRC, os.environ.get("PYTHONPATH")) if p)

import bonbon.config as bonbon_config
from bonbon.runs import expand_runs

SCHEMA = str(Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml")

# A bad config stops here, before any job, naming the key and what is wrong.
try:
    validate(config, schema=SCHEMA)
except WorkflowError:
    raise WorkflowError("\n".join(["invalid configuration:"] + bonbon_config.schema_errors(config, SCHEMA)))
try:
    bonbon_config.check_config(config)
except bonbon_config.ConfigError as error:
    raise WorkflowError(str(error))

DATASETS = sorted(config["datasets"])
N_VALUES = sorted(config["n_values"])
N_SAMPLES = max(N_VALUES)
try:
    RUNS = expand_runs(config)
except bonbon_config.ConfigError as error:
    raise WorkflowError(str(error))


wildcard_constraints:
    dataset="|".join(DATASETS),
    n="|".join(str(n) for n in N_VALUES),
    run="|".join(RUNS) or "no-runs",


def uses_toy():
    """Whether any model or dataset comes from the toy world."""
    return "toy" in config["models"].values() or any(
        d["source"] == "toy" for d in config["datasets"].values()
    )


def model_dir(role):
    """Where a model is loaded from (a toy directory, a local directory or a hub id)."""
    return bonbon_config.model_dir(config, role)


def model_input(role):
    """The model as a rule input: a directory the DAG builds or has, nothing for a hub id."""
    path = model_dir(role)
    return [path] if config["models"][role] == "toy" or bonbon_config.is_local_path(path) else []


def reference_model():
    """The reference model pi_0: the SFT model, or the base model where SFT is switched off."""
    return "results/models/sft" if config["sft"]["enabled"] else model_dir("base")


def reference_model_input():
    if config["sft"]["enabled"]:
        return ["results/models/sft/train_summary.json"]
    return model_input("base")


def prompt_source(wildcards):
    dataset = config["datasets"][wildcards.dataset]
    return "results/toy/prompts.parquet" if dataset["source"] == "toy" else dataset["path"]


def all_outputs():
    pairs = expand("results/pairs/{dataset}/n{n}.parquet", dataset=DATASETS, n=N_VALUES)
    return pairs + expand("results/models/{run}/train_summary.json", run=RUNS)
