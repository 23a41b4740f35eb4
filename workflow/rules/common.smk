# Helpers, config validation and wildcard constraints shared by every stage.
import os
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.logging import logger
from snakemake.utils import validate

# Jobs import the package from this checkout, also in a conda env (--use-conda) that holds only the
# dependencies, and on a cluster node, where each job evaluates this file again.
SRC = str(Path(workflow.basedir) / "src")
sys.path.insert(0, SRC)
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (SRC, os.environ.get("PYTHONPATH")) if p)


# and an executor that does not pass the whole environment on passes this variable
envvars:
    "PYTHONPATH",


import bonbon.config as bonbon_config
from bonbon.rerun import canonical, code_version, result_training, runtime_training
from bonbon.runs import expand_runs

SCHEMA = str(Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml")

# A bad config stops here, before any job, naming the key and what is wrong. Values given as text
# (--config passes strings; YAML 1.1 reads 1e-4 as one) are first read as the type the schema wants.
bonbon_config.coerce_config(config, SCHEMA)
try:
    validate(config, schema=SCHEMA)
except WorkflowError:
    raise WorkflowError("\n".join(["invalid configuration:"] + bonbon_config.schema_errors(config, SCHEMA)))
try:
    bonbon_config.check_config(config)
    # files and the Hub are read once, by the main process, not again by every job on a cluster node
    if workflow.is_main_process:
        hub_reached = False
        if config["check_hub"]:
            hub_warnings = bonbon_config.check_hub_ids(config)
            for warning in hub_warnings:
                logger.warning(warning)
            hub_reached = not hub_warnings and not bonbon_config.hub_offline()
        bonbon_config.check_prompt_files(config)
        bonbon_config.check_models(config, hub_online=hub_reached)
except bonbon_config.ConfigError as error:
    raise WorkflowError(str(error))

# the rules that sample (generate, sample) need vllm in their conda env when it is the backend
SAMPLING_ENV = "../../envs/{}.yaml".format("vllm" if config["generation"]["backend"] == "vllm" else "torch")

DATASETS = sorted(config["datasets"])
N_VALUES = sorted(config["n_values"])
N_SAMPLES = max(N_VALUES)
try:
    RUNS = expand_runs(config)
except bonbon_config.ConfigError as error:
    raise WorkflowError(str(error))

# Every policy the evaluation compares, per dataset: the reference, best-of-n for each n, trained runs.
POLICIES = {}
for _dataset in DATASETS:
    POLICIES[f"{_dataset}-reference"] = {"dataset": _dataset, "kind": "reference"}
    for _n in N_VALUES:
        POLICIES[f"{_dataset}-bon-n{_n}"] = {"dataset": _dataset, "kind": "best_of_n", "n": _n}
for _run, _spec in RUNS.items():
    POLICIES[_run] = {"dataset": _spec["dataset"], "kind": "trained", "loss": _spec["loss"], "n": _spec["n"],
                      "beta": _spec["beta"], "alpha": _spec["alpha"]}
PLOTS = expand("results/plots/{plot}.png", plot=["frontier", "rewards", "lengths"]) + (
    ["results/plots/training.png"] if RUNS else []
)


scattergather:
    generate=config["shards"]["generate"],
    sample=config["shards"]["sample"],
    ref_logps=config["shards"]["ref_logps"],


def shard_of(scatteritem):
    """(index, count) of a scattergather item '2-of-4' -> (1, 4)."""
    index, count = scatteritem.split("-of-")
    return int(index) - 1, int(count)


wildcard_constraints:
    dataset="|".join(DATASETS),
    n="|".join(str(n) for n in N_VALUES),
    pairs="|".join([f"n{n}" for n in N_VALUES] + ["original"]),
    run="|".join(RUNS) or "no-runs",
    policy="|".join(POLICIES),


# The files of a model directory that later jobs read, config.json first (model_location takes its
# directory). A model the workflow writes declares them as outputs, so that deleting one reschedules
# its producer; the directory itself is not an output, as Snakemake deletes the outputs of a failed job
# and a training run's checkpoints must survive a kill to resume.
MODEL_FILES = ("config.json", "model.safetensors", "tokenizer_config.json")


def model_files(directory):
    return [f"{directory}/{name}" for name in MODEL_FILES]


def model_location(files, hub_id):
    """Where a job loads a model from: the directory of its input files, else the hub id."""
    return os.path.dirname(files[0]) if len(files) else hub_id


# What reruns a job (bonbon.rerun): its params `settings`-like values hold the result-affecting config
# in one spelling, `code` the version of the package code its script runs, and `runtime` what only
# changes how it runs (config/README.md lists those keys), which Snakemake leaves out of its params
# comparison because the function takes `threads`.
def code(script):
    """The version of the package code a rule's script runs: changed code reruns the rule."""
    return code_version(Path(workflow.basedir) / "workflow" / "scripts" / script, SRC)


def runtime(**values):
    return lambda wildcards, threads: values


def model_id(role):
    """models.<role> as a setting: 'toy', a hub id, or a local directory (whose files are inputs too)."""
    model = config["models"][role]
    return os.path.normpath(model) if model != "toy" and bonbon_config.is_local_path(model) else model


def reference_id():
    """The reference model as a setting: the SFT model (its files are inputs) or the base model."""
    return "sft" if config["sft"]["enabled"] else model_id("base")


def generation_settings():
    """The generation block that changes samples: the vLLM options only with the vLLM backend."""
    generation = dict(config["generation"])
    if generation["backend"] != "vllm":
        generation.pop("vllm", None)
    return canonical(generation)


def loaded_from(name, role):
    """A params function: the directory of the model files of input `name`, else the hub id of
    models.<role>. Taking `input` makes it a derived param, which Snakemake leaves out of its params
    comparison: a changed path is a changed input, and a changed hub id is in the rule's settings."""
    return lambda wildcards, input: model_location(getattr(input, name), config["models"][role])


def model_dir(role):
    """Where a model is loaded from (a toy directory, a local directory or a hub id)."""
    return bonbon_config.model_dir(config, role)


def model_input(role):
    """A model as the input of a job: its files (config.json alone for a directory of the user's),
    nothing for a hub id."""
    path = model_dir(role)
    if config["models"][role] == "toy":
        return model_files(path)
    return [os.path.join(path, "config.json")] if bonbon_config.is_local_path(path) else []


def reference_model_input():
    if config["sft"]["enabled"]:
        return model_files("results/models/sft")
    return model_input("base")


def prompt_source(wildcards):
    return dataset_source(wildcards.dataset)


def dataset_source(name):
    """A dataset's source as an input: the toy prompt set, a prompt file, or a local HH directory."""
    dataset = config["datasets"][name]
    if dataset["source"] == "toy":
        return "results/toy/prompts.parquet"
    if dataset["source"] == "hf" and not bonbon_config.is_local_path(dataset["path"]):
        return []  # a hub id: nothing on disk to depend on
    return dataset["path"]


def pair_file(dataset, pairs):
    """The pair file a training source names: best/worst pairs 'n{n}' or the dataset's 'original' ones."""
    if pairs == "original":
        return f"results/original_pairs/{dataset}.parquet"
    return f"results/pairs/{dataset}/{pairs}.parquet"


def sft_input():
    data = config["sft"]["data"]
    return "results/toy/corpus.parquet" if data == "toy" else dataset_source(data)


def policy_model_input(wildcards):
    if POLICIES[wildcards.policy]["kind"] == "reference":
        return reference_model_input()
    return model_files(f"results/models/{wildcards.policy}")


def policy_samples(wildcards):
    """The samples an evaluation reads: best-of-n is built from the reference's samples."""
    spec = POLICIES[wildcards.policy]
    return "results/samples/{}-reference.parquet".format(spec["dataset"]) if spec["kind"] == "best_of_n" \
        else f"results/samples/{wildcards.policy}.parquet"


def all_outputs():
    """Every file a later job reads, not only the final ones: Snakemake regenerates a missing file only
    where it is a target (or a job that needs it runs anyway), so deleting any of them reschedules its
    producer."""
    outputs = ["results/eval/summary.parquet", "results/eval/theory.parquet", *PLOTS]
    if any(config["datasets"][d]["source"] == "toy" for d in DATASETS) or config["sft"]["data"] == "toy" or any(
        config["models"][role] == "toy" for role in ("base", "reward")
    ):
        outputs += ["results/toy/corpus.parquet", "results/toy/prompts.parquet"]
    for role in ("base", "reward"):
        if config["models"][role] == "toy":
            outputs += model_input(role) + [f"results/toy/{role}_model/toy_summary.json"]
            outputs += [f"results/toy/tokenizer_{'policy' if role == 'base' else 'reward'}/{name}"
                        for name in ("tokenizer.json", "tokenizer_config.json")]
    if config["sft"]["enabled"]:
        outputs += reference_model_input() + ["results/models/sft/train_summary.json"]
    for dataset in DATASETS:
        outputs.append(f"results/prompts/{dataset}.parquet")
        for stage in ("generate", "score"):
            outputs += gather.generate(f"results/{stage}/{dataset}/shards/{{scatteritem}}.parquet")
        outputs += [f"results/generate/{dataset}/samples.parquet", f"results/score/{dataset}/rewards.parquet"]
        outputs += [f"results/pairs/{dataset}/n{n}.parquet" for n in N_VALUES]
    for run, spec in RUNS.items():
        pairs = pair_file(spec["dataset"], spec["pairs"])
        ref_logps = "results/ref_logps/{dataset}/{pairs}".format(**spec)
        outputs += [pairs, f"{ref_logps}.parquet", *gather.ref_logps(f"{ref_logps}/shards/{{scatteritem}}.parquet")]
        outputs += model_files(f"results/models/{run}") + [f"results/models/{run}/train_summary.json"]
    for policy, spec in POLICIES.items():
        if spec["kind"] != "best_of_n":  # best-of-n is built from the reference's samples
            outputs += [f"results/samples/{policy}.parquet",
                        *gather.sample(f"results/samples/{policy}/shards/{{scatteritem}}.parquet")]
        outputs.append(f"results/eval/{policy}.parquet")
    return list(dict.fromkeys(outputs))
