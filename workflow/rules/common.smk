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
from bonbon.policies import (
    SAMPLES_DIR,
    Kind,
    block_names,
    block_range,
    catalog,
    samples_path,
)
from bonbon.gguf_import import IMPORTED, gguf_file, imported_name, is_gguf
from bonbon.model_refs import (
    SFT_MODEL,
    TOY_MODELS,
    TOY_TOKENIZER_FILES,
    TOY_TOKENIZERS,
    model_files,
    model_refs,
)
from bonbon.rerun import canonical, code_version, result_training, runtime_training
from bonbon.runs import check_checkpoints, checkpoint_steps, expand_runs, replicates

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
# pair file, run and estimate computed from them, as they are (bonbon.policies.block_names).
BLOCKS = block_names(max(N_VALUES))
try:
    RUNS = expand_runs(config)
    check_checkpoints(config, RUNS)
except bonbon_config.ConfigError as error:
    raise WorkflowError(str(error))

# Every policy the evaluation samples from or compares (bonbon.policies): per dataset the reference,
# best-of-n for each n, the trained runs' final models, best-of-n's candidates (more draws of the
# reference's stream, sampled as its candidates k + p*k + j, in blocks of positions like the
# generation's blocks) and the M = evaluation.opponents opponents every sample is compared with (in
# blocks of their own stream, so that raising M draws only new blocks); checkpoints {run}-step{S} by name.
POLICIES = catalog(DATASETS, N_VALUES, config["evaluation"]["opponents"], RUNS)
# Which model serves each role (base, reward, judge, reference, tokenizer), the files a rule declares
# for it and where it loads from (bonbon.model_refs)
MODELS = model_refs(config)


scattergather:
    generate=config["shards"]["generate"],
    sample=config["shards"]["sample"],
    ref_logps=config["shards"]["ref_logps"],


# Every path is written once, where its file is made: in the producing rule's output, or in the package
# where it owns the layout (bonbon.policies.samples_path, bonbon.model_refs). Other rules and `all` name
# a file through its producer, rules.<name>.output.<key>: the pattern itself where the wildcards are
# the same, else filled in by fill() or, for a scattered output, shards().
def fill(pattern, **wildcards):
    """The file of an output pattern (rules.<name>.output.<key>) with its wildcards filled in."""
    (path,) = expand(pattern, **wildcards)
    return path


def shards(pattern, scatter, **wildcards):
    """The shards of a scattered output pattern as a gather reads them: for each combination of the
    wildcard values given (a list runs over its values, in order), scattergather `scatter`'s items
    1-of-N ... N-of-N. Wildcards not given stay (a gather rule's own)."""
    items = getattr(gather, scatter)("{scatteritem}")
    return expand(pattern, **wildcards, scatteritem=items, allow_missing=True)


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
    policy=POLICIES.name_pattern(),


# What reruns a job (bonbon.rerun): its params hold the result-affecting config in one spelling
# (canonical), `code` the version of the package code its script runs, and `runtime` what only changes
# how it runs (config/README.md lists those keys), which Snakemake leaves out of its params comparison
# because the function takes `threads`.
def code(script):
    """The version of the package code a rule's script runs: changed code reruns the rule."""
    return code_version(Path(workflow.basedir) / "workflow" / "scripts" / script, SRC)


def runtime(**values):
    return lambda wildcards, threads: values


def loaded_from(name, model):
    """A params function: where the bonbon.model_refs.ModelRef `model` loads from, given the files of
    input `name` (their directory, else its hub id). Taking `input` makes it a derived param, which
    Snakemake leaves out of its params comparison: a changed path is a changed input, and a changed hub
    id is in the rule's settings.
    """
    return lambda wildcards, input: model.location_of(getattr(input, name))


def generation_settings():
    """The generation block that changes samples: the vLLM options only with the vLLM backend."""
    generation = dict(config["generation"])
    if generation["backend"] != "vllm":
        generation.pop("vllm", None)
    return canonical(generation)


def prompt_source(wildcards):
    return dataset_source(wildcards.dataset)


def dataset_source(name):
    """A dataset's source as an input: the toy prompt set, a prompt file, or a local HH directory."""
    dataset = config["datasets"][name]
    if dataset["source"] == "toy":
        return rules.toy_corpus.output.prompts
    if dataset["source"] == "hf" and not bonbon_config.is_local_path(dataset["path"]):
        return []  # a hub id: nothing on disk to depend on
    return dataset["path"]


def pair_file(dataset, pairs):
    """The pair file a training source names: best/worst pairs 'n{n}' or the dataset's 'original' ones."""
    if pairs == "original":
        return fill(rules.original_pairs.output.pairs, dataset=dataset)
    return fill(rules.pairs.output.pairs, dataset=dataset, n=pairs.removeprefix("n"))


def sft_input():
    data = config["sft"]["data"]
    return rules.toy_corpus.output.corpus if data == "toy" else dataset_source(data)


def policy_spec(policy):
    """The bonbon.policies.Policy a {policy} wildcard names (a checkpoint {run}-step{S} included)."""
    try:
        return POLICIES[policy]
    except KeyError as error:
        raise WorkflowError(error.args[0])


def run_progress(run):
    """A finished run's train summary (train is a Snakemake checkpoint: its steps are known only now)."""
    return json.loads(Path(checkpoints.train.get(run=run).output.summary).read_text())


def evaluated_policies():
    """Every policy the summary compares: the final ones and the runs' evaluated checkpoints, every
    trained one with its run and step (each run's train summary read once)."""
    policies = {}
    for name, policy in POLICIES.finals.items():
        if policy.kind != Kind.TRAINED:
            policies[name] = policy
            continue
        progress = run_progress(name)
        policies[name] = policy.at_step(progress["steps"])
        steps = checkpoint_steps(
            RUNS[name]["checkpoints"],
            progress["steps"],
            progress.get("snapshot_steps", []),
        )
        for step in steps:
            snapshot = POLICIES.checkpoint(name, step)
            policies[snapshot.name] = snapshot
    return policies


def summary_specs(wildcards):
    """policy -> spec (Policy.spec) of every policy the summary compares (see evaluated_policies)."""
    return {name: policy.spec() for name, policy in evaluated_policies().items()}


def policy_model_input(wildcards):
    policy = policy_spec(wildcards.policy)
    if policy.samples_from_reference:
        return MODELS["reference"].files
    return model_files(policy.model_dir)


def policy_run_input(wildcards):
    """What a run's snapshot policy {run}-step{S} waits for: its run's train summary. The snapshot's files
    (policy_model_input) are no rule's output (train, a checkpoint, declares only its final model), so this
    makes the train checkpoint their producer; a deleted snapshot file is then a missing input, named
    before any job, not a failed sampling job (rerunning train would not write it again).
    """
    policy = policy_spec(wildcards.policy)
    return (
        [checkpoints.train.get(run=policy.run).output.summary]
        if policy.snapshot
        else []
    )


def opponent_samples(wildcards):
    """The blocks of the opponents that every sample of a policy is compared with (its dataset's)."""
    dataset = policy_spec(wildcards.policy).dataset
    return [samples_path(p.name) for p in POLICIES.opponents_of(dataset)]


def plots():
    """The report's figures: the frontier, the distributions, the training curves where there are runs,
    and proxy against judge where models.judge is another model than models.reward."""
    outputs = [
        rules.plot_frontier.output.png,
        rules.plot_distributions.output.rewards,
        rules.plot_distributions.output.lengths,
    ]
    if RUNS:
        outputs.append(rules.plot_training.output.png)
    if MODELS["judge"].location != MODELS["reward"].location:
        outputs.append(rules.plot_judge.output.png)
    return outputs


def uses_toy_world():
    return (
        any(config["datasets"][d]["source"] == TOY for d in DATASETS)
        or (config["sft"]["enabled"] and config["sft"]["data"] == TOY)
        or any(config["models"][role] == TOY for role in ("base", "reward"))
    )


def all_outputs():
    """Every file a later job reads, not only the final ones: Snakemake regenerates a missing file only
    where it is a target (or a job that needs it runs anyway), so deleting any of them reschedules its
    producer. Each is named through the output pattern of the rule that writes it."""
    outputs = [
        rules.summary.output.parquet,
        rules.summary.output.runs_parquet,
        rules.summary.output.seeds_parquet,
        rules.theory.output.table,
        *plots(),
    ]
    outputs += [rules.exact_world.output.table, rules.exact_world.output.png]
    if uses_toy_world():
        outputs += [rules.toy_corpus.output.corpus, rules.toy_corpus.output.prompts]
    toy_models = {
        "base": rules.toy_base_model,
        "reward": rules.toy_reward_model,
        "judge": rules.toy_judge_model,
    }
    for role in ("base", "reward", "judge"):
        if config["models"][role] == TOY:
            toy_model = toy_models[role].output
            tokenizer = getattr(
                rules.toy_tokenizers.output, "policy" if role == "base" else "reward"
            )
            outputs += [*toy_model.model, toy_model.summary, *tokenizer]
    for name in GGUF_IMPORTS:
        outputs += expand(rules.import_gguf.output, name=name)
    if config["sft"]["enabled"]:
        outputs += rules.sft.output
    for dataset in DATASETS:
        outputs.append(fill(rules.prompts.output.prompts, dataset=dataset))
        if config["datasets"][dataset].get("build_pairs") is False:
            continue  # a preference dataset trained on its own pairs: no generation, scoring or pairs
        # the scores are sharded as the samples they score
        for pattern in (rules.generate.output.samples, rules.score.output.rewards):
            outputs += shards(pattern, "generate", dataset=dataset, block=BLOCKS)
        outputs += [
            fill(rules.gather_samples.output.table, dataset=dataset),
            fill(rules.gather_rewards.output.table, dataset=dataset),
        ]
        outputs += expand(rules.pairs.output.pairs, dataset=dataset, n=N_VALUES)
    for run, spec in RUNS.items():
        pairs = {"dataset": spec["dataset"], "pairs": spec["pairs"]}
        outputs += [
            pair_file(**pairs),
            fill(rules.gather_ref_logps.output.ref_logps, **pairs),
            *shards(rules.ref_logps.output.ref_logps, "ref_logps", **pairs),
        ]
        outputs += expand(rules.train.output, run=run)
    # best-of-n is built from the reference's candidates
    for policy in POLICIES.sampled():
        outputs += [
            fill(rules.gather_policy_samples.output.table, policy=policy.name),
            *shards(rules.sample.output.samples, "sample", policy=policy.name),
        ]
    outputs += expand(
        rules.evaluate.output.table,
        policy=[name for name, p in POLICIES.finals.items() if p.is_evaluated],
    )
    return list(dict.fromkeys(outputs))


# ---- the ecosystem's formats (export.smk; the original pairs of TRL-layout datasets, train.smk)
import shlex


def trl_tokenizer_input(wildcards):
    """The policy's tokenizer, for a TRL-layout dataset's pairs (chat rendering, the prompt-length check)."""
    dataset = config["datasets"][wildcards.dataset]
    trl = dataset["source"] == "hf" and dataset["format"] in ("trl", "messages")
    return MODELS["tokenizer"].files if trl else []


def card_specs():
    """policy -> {directory, run} for every trained policy the summary evaluates (final and snapshots)."""
    return {
        name: {"directory": policy.model_dir, "run": canonical(RUNS[policy.run])}
        for name, policy in evaluated_policies().items()
        if policy.kind == Kind.TRAINED
    }


def export_outputs():
    """What `all` adds: the pair exports with export.pairs, the model cards with export.model_cards."""
    outputs = []
    if config["export"]["pairs"]:
        export = rules.export_pairs.output
        for d in DATASETS:
            built = config["datasets"][d].get("build_pairs") is not False
            kinds = {f"n{n}" for n in N_VALUES if built}
            kinds |= {spec["pairs"] for spec in RUNS.values() if spec["dataset"] == d}
            for kind in sorted(kinds):
                outputs += [
                    fill(export.parquet, dataset=d, pairs=kind),
                    fill(export.jsonl, dataset=d, pairs=kind),
                ]
    if config["export"]["model_cards"] and RUNS:
        outputs.append(rules.model_cards.output.index)
    return outputs
