# Helpers, config validation and wildcard constraints shared by every stage.
import json
import os
import re
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.logging import logger
from snakemake.utils import validate

# Jobs import the package from this checkout, also in a conda env (--use-conda) that holds only the
# dependencies, and on a cluster node, where each job evaluates this file again.
SRC = str(Path(workflow.basedir) / "src")
sys.path.insert(0, SRC)
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (SRC, os.environ.get("PYTHONPATH")) if p
)


# and an executor that does not pass the whole environment on passes this variable
envvars:
    "PYTHONPATH",


import bonbon.config as bonbon_config
from bonbon.config import TOY
from bonbon.evaluate import candidate_samples
from bonbon.gguf_import import IMPORTED, gguf_file, imported_dir, imported_name, is_gguf
from bonbon.reward_functions import is_reward_function
from bonbon.rerun import canonical, code_version, result_training, runtime_training
from bonbon.runs import check_checkpoints, checkpoint_steps, expand_runs, replicates
from bonbon.sampling import sample_blocks

# the package's schema (package data): the package and the workflow read the one file
SCHEMA = str(bonbon_config.SCHEMA)

# A bad config stops here, before any job, naming the key and what is wrong. Values given as text
# (--config passes strings; YAML 1.1 reads 1e-4 as one) are first read as the type the schema wants.
bonbon_config.coerce_config(config, SCHEMA)
try:
    validate(config, schema=SCHEMA)
except WorkflowError:
    raise WorkflowError(
        "\n".join(
            ["invalid configuration:"] + bonbon_config.schema_errors(config, SCHEMA)
        )
    )
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
        bonbon_config.check_reward_functions(config)
except bonbon_config.ConfigError as error:
    raise WorkflowError(str(error))

# the rules that sample (generate, sample) need vllm in their conda env when it is the backend
SAMPLING_ENV = "../../envs/{}.yaml".format(
    "vllm" if config["generation"]["backend"] == "vllm" else "torch"
)

DATASETS = sorted(config["datasets"])
N_VALUES = sorted(config["n_values"])


# Samples are drawn and scored in blocks of sample indices [0, 2), [2, 4), [4, 8), ... (bonbon.sampling.
# sample_blocks), each by its own jobs: a larger n adds blocks and leaves the existing ones, and every
# pair file, run and estimate computed from them, as they are.
def block_names(n):
    """The blocks, named 'first-stop', that hold samples 0 ... n-1 of a prompt."""
    return ["{}-{}".format(*block) for block in sample_blocks(n)]


def block_range(name):
    first, stop = name.split("-")
    return int(first), int(stop)


BLOCKS = block_names(max(N_VALUES))
try:
    RUNS = expand_runs(config)
    check_checkpoints(config, RUNS)
except bonbon_config.ConfigError as error:
    raise WorkflowError(str(error))

# Every policy the evaluation compares, per dataset: the reference, best-of-n for each n, trained runs.
POLICIES = {}
for _dataset in DATASETS:
    POLICIES[f"{_dataset}-reference"] = {"dataset": _dataset, "kind": "reference"}
    for _n in N_VALUES:
        POLICIES[f"{_dataset}-bon-n{_n}"] = {
            "dataset": _dataset,
            "kind": "best_of_n",
            "n": _n,
        }
# best-of-n's draws on the eval prompts, sampled as the reference's candidates k + p*k + j (position p,
# replicate j < k; bonbon.evaluate), in blocks of positions like the generation's blocks
CANDIDATES = {
    f"{_dataset}-bon-candidates{_block}": {
        "dataset": _dataset,
        "kind": "candidates",
        "positions": block_range(_block),
    }
    for _dataset in DATASETS
    for _block in BLOCKS
}
# the opponents of every evaluated sample: M = evaluation.opponents more reference draws per eval prompt,
# samples 0 ... M-1 of their own stream (sampling_stream), disjoint from the reference's own k samples
# and from best-of-n's candidates, in blocks of sample indices so that raising M draws only new blocks
OPPONENTS = {
    f"{_dataset}-opponents{_block}": {
        "dataset": _dataset,
        "kind": "opponents",
        "samples": block_range(_block),
    }
    for _dataset in DATASETS
    for _block in block_names(config["evaluation"]["opponents"])
}
for _run, _spec in RUNS.items():
    POLICIES[_run] = {
        "dataset": _spec["dataset"],
        "kind": "trained",
        "loss": _spec["loss"],
        "n": _spec["n"],
        "beta": _spec["beta"],
        "alpha": _spec["alpha"],
    }
PLOTS = expand("results/plots/{plot}.png", plot=["frontier", "rewards", "lengths"]) + (
    ["results/plots/training.png"] if RUNS else []
)


scattergather:
    generate=config["shards"]["generate"],
    sample=config["shards"]["sample"],
    ref_logps=config["shards"]["ref_logps"],


def block_shards(stage, dataset, blocks):
    """The shard files of stage generate or score for the sample blocks `blocks` of a dataset."""
    return [
        path
        for block in blocks
        for path in gather.generate(
            f"results/{stage}/{dataset}/shards/samples{block}/{{scatteritem}}.parquet"
        )
    ]


def shard_of(scatteritem):
    """(index, count) of a scattergather item '2-of-4' -> (1, 4)."""
    index, count = scatteritem.split("-of-")
    return int(index) - 1, int(count)


# every GGUF file of models.*, by the directory it is imported into (import_gguf in models.smk)
GGUF_IMPORTS = {}
for _role in ("base", "reward", "judge"):
    if is_gguf(config["models"].get(_role)):
        GGUF_IMPORTS[imported_name(config["models"][_role])] = config["models"][_role]


wildcard_constraints:
    dataset="|".join(DATASETS),
    n="|".join(str(n) for n in N_VALUES),
    block="|".join(BLOCKS),
    name="|".join(re.escape(name) for name in GGUF_IMPORTS) or "no-imports",
    pairs="|".join([f"n{n}" for n in N_VALUES] + ["original"]),
    run="|".join(RUNS) or "no-runs",
    # the final policies, best-of-n's candidate blocks, and a run's evaluated checkpoints {run}-step{S}
    policy="|".join(
        [re.escape(p) for p in [*POLICIES, *CANDIDATES, *OPPONENTS]]
        + [f"{re.escape(r)}-step[0-9]+" for r in RUNS]
    ),


# where the toy world writes its models (toy.smk), and so where "toy" in config key models.* reads them
TOY_MODELS = {role: f"results/toy/{role}_model" for role in ("base", "reward", "judge")}


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


# What reruns a job (bonbon.rerun): its params hold the result-affecting config in one spelling
# (canonical), `code` the version of the package code its script runs, and `runtime` what only changes
# how it runs (config/README.md lists those keys), which Snakemake leaves out of its params comparison
# because the function takes `threads`.
def code(script):
    """The version of the package code a rule's script runs: changed code reruns the rule."""
    return code_version(Path(workflow.basedir) / "workflow" / "scripts" / script, SRC)


def runtime(**values):
    return lambda wildcards, threads: values


def model_setting(role):
    """config key models.<role> as written; the judge left unset (null) is the reward model's."""
    return config["models"][bonbon_config.model_role(config, role)]


def model_id(role):
    """models.<role> as a setting: 'toy', a hub id, a local directory (whose files are inputs too), a
    GGUF file (its imported directory's files are inputs) or a reward function (canonical mapping).
    """
    model = model_setting(role)
    if isinstance(model, dict):
        return canonical(model)
    return (
        os.path.normpath(model)
        if model != TOY and bonbon_config.is_local_path(model)
        else model
    )


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
    comparison: a changed path is a changed input, and a changed hub id is in the rule's settings.
    """
    return lambda wildcards, input: model_location(
        getattr(input, name), model_setting(role)
    )


def model_dir(role):
    """Where a model is loaded from (a toy directory, a GGUF file's imported directory, a local directory
    or a hub id); a reward function's setting as it is."""
    model = model_setting(role)
    if is_gguf(model):
        return imported_dir(model)
    return TOY_MODELS[bonbon_config.model_role(config, role)] if model == TOY else model


def model_input(role):
    """A model as the input of a job: its files (config.json alone for a directory of the user's),
    nothing for a hub id or a reward function."""
    model = model_setting(role)
    if model == TOY or is_gguf(model):
        return model_files(model_dir(role))
    if is_reward_function(model):
        return []
    return (
        [os.path.join(model, "config.json")]
        if bonbon_config.is_local_path(model)
        else []
    )


# proxy against judge only where they differ (models.judge set to another model than models.reward)
if model_dir("judge") != model_dir("reward"):
    PLOTS.append("results/plots/judge_vs_proxy.png")


TOY_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


def policy_tokenizer_input():
    """The policy's tokenizer (the base model's, which SFT keeps): the toy one is built before the model."""
    if config["models"]["base"] == TOY:
        return [f"results/toy/tokenizer_policy/{name}" for name in TOY_TOKENIZER_FILES]
    return model_input("base")


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


CHECKPOINT_POLICY = re.compile(r"^(?P<run>.+)-step(?P<step>[0-9]+)$")


def policy_spec(policy):
    """What a policy is: POLICIES' entry, or for a checkpoint {run}-step{S} its run's with run and step."""
    if policy in POLICIES:
        return POLICIES[policy]
    if policy in CANDIDATES:
        return CANDIDATES[policy]
    if policy in OPPONENTS:
        return OPPONENTS[policy]
    match = CHECKPOINT_POLICY.match(policy)
    if not match or match["run"] not in RUNS:
        raise WorkflowError(f"unknown policy {policy!r}")
    return {**POLICIES[match["run"]], "run": match["run"], "step": int(match["step"])}


def run_progress(run):
    """A finished run's train summary (train is a Snakemake checkpoint: its steps are known only now)."""
    return json.loads(Path(checkpoints.train.get(run=run).output.summary).read_text())


def evaluated_policies():
    """Every policy the summary compares, with its spec: POLICIES and the runs' evaluated checkpoints,
    every trained one with its run and step (each run's train summary read once)."""
    specs = {}
    for policy, spec in POLICIES.items():
        if spec["kind"] != "trained":
            specs[policy] = spec
            continue
        progress = run_progress(policy)
        specs[policy] = {**spec, "run": policy, "step": progress["steps"]}
        steps = checkpoint_steps(
            RUNS[policy]["checkpoints"],
            progress["steps"],
            progress.get("snapshot_steps", []),
        )
        specs.update(
            {
                f"{policy}-step{step}": policy_spec(f"{policy}-step{step}")
                for step in steps
            }
        )
    return specs


def summary_specs(wildcards):
    """policy -> spec for the summary (see evaluated_policies)."""
    return evaluated_policies()


def policy_model(policy):
    """The directory of a trained policy's model: a run's final model or one of its snapshots."""
    spec = policy_spec(policy)
    if "step" in spec:
        return "results/models/{}/snapshots/step-{:06d}".format(
            spec["run"], spec["step"]
        )
    return f"results/models/{policy}"


def samples_from_reference(policy):
    """Whether a policy's samples are the reference's: its own, best-of-n's candidates or the opponents."""
    return policy_spec(policy)["kind"] in ("reference", "candidates", "opponents")


def sample_range(wildcards):
    """(first, stop): the sample indices drawn on every eval prompt; k = samples_per_prompt for each
    policy, best-of-n's candidates after the reference's k (bonbon.evaluate.candidate_samples), the
    opponents' block in their own stream.
    """
    spec, k = policy_spec(wildcards.policy), config["evaluation"]["samples_per_prompt"]
    if "samples" in spec:  # a block of the opponents
        return spec["samples"]
    return candidate_samples(spec["positions"], k) if "positions" in spec else (0, k)


def sampling_stream(wildcards):
    """Whose random numbers a policy's samples use (bonbon.sampling.policy_seed): the candidates are
    more draws of the reference's stream, at other sample indices; the opponents' blocks share a stream
    of their own, {dataset}-opponents."""
    spec = policy_spec(wildcards.policy)
    if spec["kind"] == "opponents":
        return "{}-opponents".format(spec["dataset"])
    return (
        "{}-reference".format(spec["dataset"])
        if spec["kind"] == "candidates"
        else wildcards.policy
    )


def policy_model_input(wildcards):
    if samples_from_reference(wildcards.policy):
        return reference_model_input()
    return model_files(policy_model(wildcards.policy))


def policy_run_input(wildcards):
    """What a run's snapshot policy {run}-step{S} waits for: its run's train summary. The snapshot's files
    (policy_model_input) are no rule's output (train, a checkpoint, declares only its final model), so this
    makes the train checkpoint their producer; a deleted snapshot file is then a missing input, named
    before any job, not a failed sampling job (rerunning train would not write it again).
    """
    spec = policy_spec(wildcards.policy)
    return (
        [checkpoints.train.get(run=spec["run"]).output.summary]
        if "step" in spec
        else []
    )


def policy_samples(wildcards):
    """The samples an evaluation reads: best-of-n's are the blocks of candidates that hold its n draws."""
    spec = policy_spec(wildcards.policy)
    if spec["kind"] == "best_of_n":
        return [
            "results/samples/{}-bon-candidates{}.parquet".format(spec["dataset"], block)
            for block in block_names(spec["n"])
        ]
    return [f"results/samples/{wildcards.policy}.parquet"]


def opponent_samples(wildcards):
    """The blocks of the opponents that every sample of a policy is compared with (its dataset's)."""
    dataset = policy_spec(wildcards.policy)["dataset"]
    return [
        f"results/samples/{name}.parquet"
        for name, spec in OPPONENTS.items()
        if spec["dataset"] == dataset
    ]


def all_outputs():
    """Every file a later job reads, not only the final ones: Snakemake regenerates a missing file only
    where it is a target (or a job that needs it runs anyway), so deleting any of them reschedules its
    producer."""
    outputs = [
        "results/eval/summary.parquet",
        "results/eval/runs.parquet",
        "results/eval/seeds.parquet",
        "results/eval/theory.parquet",
        *PLOTS,
    ]
    outputs += ["results/exact/exact_world.parquet", "results/plots/exact_world.png"]
    if (
        any(config["datasets"][d]["source"] == TOY for d in DATASETS)
        or (config["sft"]["enabled"] and config["sft"]["data"] == TOY)
        or any(config["models"][role] == TOY for role in ("base", "reward"))
    ):
        outputs += ["results/toy/corpus.parquet", "results/toy/prompts.parquet"]
    for role in ("base", "reward", "judge"):
        if config["models"][role] == TOY:
            outputs += model_input(role) + [f"{TOY_MODELS[role]}/toy_summary.json"]
            outputs += [
                f"results/toy/tokenizer_{'policy' if role == 'base' else 'reward'}/{name}"
                for name in TOY_TOKENIZER_FILES
            ]
    for name in GGUF_IMPORTS:
        outputs += model_files(f"{IMPORTED}/{name}") + [
            f"{IMPORTED}/{name}/import_summary.json"
        ]
    if config["sft"]["enabled"]:
        outputs += reference_model_input() + ["results/models/sft/train_summary.json"]
    for dataset in DATASETS:
        outputs.append(f"results/prompts/{dataset}.parquet")
        if config["datasets"][dataset].get("build_pairs") is False:
            continue  # a preference dataset trained on its own pairs: no generation, scoring or pairs
        for stage in ("generate", "score"):
            outputs += block_shards(stage, dataset, BLOCKS)
        outputs += [
            f"results/generate/{dataset}/samples.parquet",
            f"results/score/{dataset}/rewards.parquet",
        ]
        outputs += [f"results/pairs/{dataset}/n{n}.parquet" for n in N_VALUES]
    for run, spec in RUNS.items():
        pairs = pair_file(spec["dataset"], spec["pairs"])
        ref_logps = "results/ref_logps/{dataset}/{pairs}".format(**spec)
        outputs += [
            pairs,
            f"{ref_logps}.parquet",
            *gather.ref_logps(f"{ref_logps}/shards/{{scatteritem}}.parquet"),
        ]
        outputs += model_files(f"results/models/{run}") + [
            f"results/models/{run}/train_summary.json"
        ]
    for policy, spec in {**POLICIES, **CANDIDATES, **OPPONENTS}.items():
        if (
            spec["kind"] != "best_of_n"
        ):  # best-of-n is built from the reference's candidates
            outputs += [
                f"results/samples/{policy}.parquet",
                *gather.sample(
                    f"results/samples/{policy}/shards/{{scatteritem}}.parquet"
                ),
            ]
        if spec["kind"] not in ("candidates", "opponents"):
            outputs.append(f"results/eval/{policy}.parquet")
    return list(dict.fromkeys(outputs))


# ---- the ecosystem's formats (export.smk; the original pairs of TRL-layout datasets, train.smk)
import shlex


def trl_tokenizer_input(wildcards):
    """The policy's tokenizer, for a TRL-layout dataset's pairs (chat rendering, the prompt-length check)."""
    dataset = config["datasets"][wildcards.dataset]
    trl = dataset["source"] == "hf" and dataset["format"] in ("trl", "messages")
    return policy_tokenizer_input() if trl else []


def card_specs():
    """policy -> {directory, run} for every trained policy the summary evaluates (final and snapshots)."""
    return {
        policy: {"directory": policy_model(policy), "run": canonical(RUNS[spec["run"]])}
        for policy, spec in evaluated_policies().items()
        if spec["kind"] == "trained"
    }


def export_outputs():
    """What `all` adds: the pair exports with export.pairs, the model cards with export.model_cards."""
    outputs = []
    if config["export"]["pairs"]:
        outputs += [
            f"results/export/{d}/{kind}.{ext}"
            for d in DATASETS
            for kind in sorted(
                {
                    f"n{n}"
                    for n in N_VALUES
                    if config["datasets"][d].get("build_pairs") is not False
                }
                | {spec["pairs"] for spec in RUNS.values() if spec["dataset"] == d}
            )
            for ext in ("parquet", "jsonl")
        ]
    if config["export"]["model_cards"] and RUNS:
        outputs.append("results/cards/cards.json")
    return outputs
