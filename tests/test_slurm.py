"""The workflow on SLURM through profiles/slurm.

Without SLURM: the profile's keys, and the sbatch call the SLURM executor plugin builds for a GPU rule
from it (a fake sbatch on PATH records the call instead of submitting).

With SLURM (BONBON_SLURM_TESTS=1 starts a local one-node cluster with fake GPUs through
scripts/slurm/start-local-cluster.sh; or a cluster started by that script already answers to sinfo):
a tiny toy world to pairs through `snakemake --profile profiles/slurm`, GPU rules submitted with
--gpus=1 to the gpu partition, results equal to a local run; a rule asking for more GPUs than the
cluster has fails at once with SLURM's reason instead of waiting.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from pandas.testing import assert_frame_equal

from conftest import REPO, run_workflow

PROFILE = REPO / "profiles" / "slurm"
START = REPO / "scripts" / "slurm" / "start-local-cluster.sh"
STOP = REPO / "scripts" / "slurm" / "stop-local-cluster.sh"
FORCED = os.environ.get("BONBON_SLURM_TESTS") == "1"
HAVE_PLUGIN = importlib.util.find_spec("snakemake_executor_plugin_slurm") is not None

# The rules that ask for a GPU (resources gpu=1 in workflow/rules); the profile sizes each of them.
KNOWN_GPU_RULES = {"generate", "score", "sft", "ref_logps", "train", "sample"}

# Small enough that each of the 12 SLURM jobs (each evaluates the Snakefile again) takes seconds; two
# generation/scoring shards, so that two GPU jobs share the node's two (fake) GPUs.
TINY = {
    "datasets": {"toy": {"source": "toy"}},
    "n_values": [2, 4],
    "toy": {
        "n_dialogues": 300, "n_prompts": 40, "eval_fraction": 0.25,
        "base_model": {"steps": 20, "hidden_size": 32, "num_layers": 1, "num_heads": 2},
        "reward_model": {"steps": 20, "hidden_size": 32, "num_layers": 1, "num_heads": 2},
    },
    "generation": {"max_new_tokens": 16, "batch_size": 16},
    "sft": {"enabled": False},
    "runs": [],
    "shards": {"generate": 2},
}
TABLES = [  # what --until pairs gather_rewards makes (scoring and pairs read the shards of each block)
    "results/generate/toy/shards/samples0-2/1-of-2.parquet",
    "results/generate/toy/shards/samples0-2/2-of-2.parquet",
    "results/generate/toy/shards/samples2-4/1-of-2.parquet",
    "results/generate/toy/shards/samples2-4/2-of-2.parquet",
    "results/score/toy/rewards.parquet",
    "results/pairs/toy/n2.parquet",
    "results/pairs/toy/n4.parquet",
]
SLURM_RUN_TIMEOUT = 600  # seconds; the run takes about 2 minutes on 2 busy cores


def profile_config() -> dict:
    return yaml.safe_load((PROFILE / "config.yaml").read_text())


def workflow_gpu_rules() -> set[str]:
    """Rules (and checkpoints) whose `resources:` ask for a GPU, read from workflow/rules/*.smk."""
    rules = set()
    for smk in (REPO / "workflow" / "rules").glob("*.smk"):
        blocks = re.split(r"^(?:rule|checkpoint) (\w+):", smk.read_text(), flags=re.M)
        for name, body in zip(blocks[1::2], blocks[2::2], strict=True):
            if re.search(r"^\s+gpu\s*=", body, flags=re.M):
                rules.add(name)
    return rules


def snakemake_cmd(workdir: Path, configfile: Path, *args: str, timeout: int) -> list[str]:
    """Snakemake with the SLURM profile, stopped by SIGINT (not SIGTERM, which a waiting Snakemake
    ignores) after `timeout` seconds, so a run that never sees its jobs finish fails instead of hanging."""
    return ["timeout", "-s", "INT", "-k", "60", str(timeout), sys.executable, "-m", "snakemake",
            "-s", str(REPO / "Snakefile"), "-d", str(workdir), "--configfile", str(configfile),
            "--profile", str(PROFILE), *args]


def run(cmd: list[str], timeout: int,
        env: dict | None = None) -> tuple[subprocess.CompletedProcess, str, float]:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), **(env or {})}
    start = time.monotonic()
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout + 120)
    return result, result.stdout + result.stderr, time.monotonic() - start


def sbatch_calls(output: str) -> dict[str, list[str]]:
    """rule -> the sbatch calls the plugin logged (--verbose), without the --wrap'ed command."""
    calls: dict[str, list[str]] = {}
    for call in re.findall(r"sbatch call: (sbatch .*?) --wrap=", output):
        rule = re.search(r"--comment '?rule_([A-Za-z0-9_]+?)(?:_wildcards_\S*)?'?\s", call).group(1)
        calls.setdefault(rule, []).append(call)
    return calls


# --- without SLURM ------------------------------------------------------------------------------------


def test_profile_sizes_every_gpu_rule_in_one_place():
    profile = profile_config()
    assert profile["executor"] == "slurm"
    assert profile["retries"] == 1, "a failed job (one shard) must be resubmitted alone, once"
    assert profile["jobs"] >= 1 and profile["latency-wait"] >= 1
    for key in ("slurm_partition", "mem_mb", "runtime", "cpus_per_task"):
        assert key in profile["default-resources"], key
    gpu_rules = workflow_gpu_rules()
    assert KNOWN_GPU_RULES <= gpu_rules, gpu_rules
    sized = {rule for rule, res in profile["set-resources"].items() if res.get("gpu", 0) >= 1}
    assert sized == gpu_rules, (f"rules with gpu= in workflow/rules but not in the profile: "
                                f"{gpu_rules - sized}")
    for rule in gpu_rules:
        for key in ("gpu", "runtime", "mem_mb", "slurm_partition"):
            assert key in profile["set-resources"][rule], f"profiles/slurm: set-resources.{rule}.{key}"


def declared_mem_mb() -> dict[str, int]:
    """Each rule's literal `mem_mb=` in workflow/rules/*.smk."""
    declared = {}
    for smk in (REPO / "workflow" / "rules").glob("*.smk"):
        blocks = re.split(r"^(?:rule|checkpoint) (\w+):", smk.read_text(), flags=re.M)
        for name, body in zip(blocks[1::2], blocks[2::2], strict=True):
            if found := re.search(r"^\s+mem_mb=(\d+),", body, flags=re.M):
                declared[name] = int(found.group(1))
    return declared


def test_small_models_cpu_profile_sizes_every_model_rule_within_its_budget():
    """profiles/small-models-cpu: the rules it names exist (a misspelt one would be ignored), every GPU
    rule's memory, declared or set there, fits the machine's budget on its own, and the threads it
    sets are at most its cores."""
    profile = yaml.safe_load((REPO / "profiles" / "small-models-cpu" / "config.yaml").read_text())
    declared = declared_mem_mb()
    threads = dict(item.split("=") for item in profile["set-threads"])
    sized = {}
    for item in profile["set-resources"]:
        rule, setting = item.split(":")
        key, value = setting.split("=")
        assert key == "mem_mb", item
        sized[rule] = int(value)
    assert set(threads) | set(sized) <= set(declared), set(threads) | set(sized) - set(declared)
    assert all(1 <= int(t) <= profile["cores"] for t in threads.values()), threads
    (budget,) = [int(r.split("=")[1]) for r in profile["resources"] if r.startswith("mem_mb=")]
    for rule in workflow_gpu_rules():
        assert sized.get(rule, declared[rule]) <= budget, f"{rule} needs more than the profile's {budget} MB"
    # the two heaviest of SmolLM2's measured peaks (docs/real-world.md), each under what is declared
    assert sized["train"] >= 4271 and sized["ref_logps"] >= 3382 and sized["sample"] >= 1798


def test_no_workflow_profile_replaces_the_slurm_profiles_resources():
    """A workflow profile is loaded automatically and replaces --profile's keys one top-level key at a
    time: set-resources there would silently take the GPUs away from every GPU rule on SLURM."""
    for folder in (REPO / "profiles" / "default", REPO / "workflow" / "profiles" / "default"):
        for name in ("config.yaml", "profile.yaml"):
            path = folder / name
            if path.exists():
                keys = set(yaml.safe_load(path.read_text()) or {})
                assert not keys & {"set-resources", "default-resources", "set-threads"}, (
                    f"{path.relative_to(REPO)} sets "
                    f"{keys & {'set-resources', 'default-resources', 'set-threads'}}, "
                    "which replaces profiles/slurm's on every run; put such settings in profiles/slurm")


FAKE_SBATCH = """#!{python}
# records the call instead of submitting it, and fails like a rejected submission
import json, os, sys
with open(os.environ["FAKE_SBATCH_LOG"], "a") as f:
    f.write(json.dumps(sys.argv[1:]) + "\\n")
print("sbatch: error: fake sbatch of tests/test_slurm.py: not submitted", file=sys.stderr)
sys.exit(1)
"""


def fake_slurm_tools(tmp_path: Path) -> Path:
    """A bin/ folder with the fake sbatch and SLURM tools that answer as a cluster without jobs."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text(FAKE_SBATCH.format(python=sys.executable))
    # no SLURM needed: accounting absent (the plugin then submits without -A), nothing queued
    (bin_dir / "sacct").write_text("#!/bin/sh\necho 'sacct: accounting storage is disabled' >&2\nexit 1\n")
    (bin_dir / "squeue").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "sinfo").write_text("#!/bin/sh\necho 'PARTITION'\n")
    (bin_dir / "scontrol").write_text("#!/bin/sh\necho 'MinJobAge = 300 sec'\n")
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    return bin_dir


@pytest.mark.skipif(not HAVE_PLUGIN, reason="snakemake-executor-plugin-slurm is not installed")
@pytest.mark.parametrize("gpu_model", [None, "a100"])
def test_profile_renders_gpu_flags_for_a_gpu_rule(tmp_path, gpu_model):
    """The sbatch call the plugin builds for `generate` from the profile, caught by a fake sbatch."""
    bin_dir = fake_slurm_tools(tmp_path)
    work = tmp_path / "work"
    # generate's inputs and what they are made from, oldest first, so that nothing upstream is due
    # (the files are never read here)
    for name in ("toy/corpus.parquet", "toy/prompts.parquet", "toy/tokenizer_policy/tokenizer.json",
                 "toy/tokenizer_policy/tokenizer_config.json", "toy/tokenizer_reward/tokenizer.json",
                 "toy/tokenizer_reward/tokenizer_config.json", "toy/base_model/config.json",
                 "toy/base_model/model.safetensors", "toy/base_model/tokenizer_config.json",
                 "toy/base_model/toy_summary.json", "prompts/toy.parquet"):
        path = work / "results" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
        time.sleep(0.01)
    configfile = tmp_path / "config.yaml"
    configfile.write_text(yaml.safe_dump({**TINY, "shards": {"generate": 1}}))
    extra = []
    if gpu_model:
        # a second profile replaces top-level keys of the first: the whole set-resources block
        resources = copy.deepcopy(profile_config()["set-resources"])
        resources["generate"]["gpu_model"] = gpu_model
        (tmp_path / "site").mkdir()
        (tmp_path / "site" / "config.yaml").write_text(yaml.safe_dump({"set-resources": resources}))
        extra = ["--profile", str(tmp_path / "site")]
    log = tmp_path / "sbatch.jsonl"
    cmd = snakemake_cmd(work, configfile, *extra, "--allowed-rules", "generate",
                        "--slurm-init-seconds-before-status-checks", "1", "--",
                        "results/generate/toy/shards/samples0-2/1-of-1.parquet", timeout=120)
    result, output, _ = run(cmd, timeout=120, env={"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
                                                    "FAKE_SBATCH_LOG": str(log)})
    assert result.returncode not in (0, 124, 137), output[-3000:]
    assert log.exists(), f"sbatch was never called:\n{output[-3000:]}"
    args = json.loads(log.read_text().splitlines()[0])
    expected = profile_config()["set-resources"]["generate"]
    assert (f"--gpus={gpu_model}:1" if gpu_model else "--gpus=1") in args, args
    assert args[args.index("-p") + 1] == expected["slurm_partition"]
    assert args[args.index("-t") + 1] == str(expected["runtime"])
    assert args[args.index("--mem") + 1] == str(expected["mem_mb"])
    assert "--cpus-per-task=2" in args, "default-resources cpus_per_task=threads: generate has 2 threads"
    assert args[args.index("--comment") + 1].startswith("rule_generate_wildcards_toy"), args
    # retries: 1 in the profile resubmits the failed job once
    assert len(log.read_text().splitlines()) == 2, log.read_text()


BATCHED = REPO / "profiles" / "slurm-batched"


@pytest.mark.skipif(not HAVE_PLUGIN, reason="snakemake-executor-plugin-slurm is not installed")
def test_batched_profile_submits_the_table_jobs_as_one_group_of_capped_size(tmp_path):
    """profiles/slurm-batched on top of profiles/slurm: once everything before the evaluation exists,
    the evaluation's table jobs go to SLURM as one submission, sized for `cores` members at a time (not
    the sum of all of them), and no other rule's job is changed by the cap."""
    batched = yaml.safe_load((BATCHED / "config.yaml").read_text())
    grouped = {entry.split("=")[0] for entry in batched["groups"]}
    cap = batched["cores"]
    work = tmp_path / "work"
    work.mkdir()
    configfile = tmp_path / "config.yaml"
    # no runs, so no checkpoint hides part of the DAG; enough n that the evaluate jobs outnumber the cap
    configfile.write_text(yaml.safe_dump({**TINY, "n_values": [2, 4, 8, 16], "shards": {"generate": 1}}))
    dump = subprocess.run([sys.executable, str(REPO / "scripts" / "dag_jobs.py"), "--directory", str(work),
                           "--configfile", str(configfile)], capture_output=True, text=True, check=True,
                          env={**os.environ, "PYTHONPATH": str(REPO / "src")}, timeout=300)
    jobs = json.loads(dump.stdout)
    assert max(job["threads"] for job in jobs) <= cap, "the cap would change some job's threads"
    in_group = [job for job in jobs if job["rule"] in grouped]
    assert {"evaluate", "summary", "theory"} <= {job["rule"] for job in in_group}
    assert sum(job["rule"] == "evaluate" for job in in_group) > cap, "too few jobs to show the cap"
    # every other job's outputs as empty stand-ins, oldest upstream first and newer than every source
    # file (a fresh clone's files are minutes old), so only the group is due
    producer = {out: job for job in jobs for out in job["output"]}
    depth: dict[str, int] = {}

    def level(path: str) -> int:
        if path not in producer:
            return 0
        if path not in depth:
            depth[path] = 1 + max((level(i) for i in producer[path]["input"]), default=0)
        return depth[path]

    now = time.time()
    for job in jobs:
        if job["rule"] in grouped or job["rule"] == "all":
            continue
        for out in job["output"]:
            path = work / out
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
            os.utime(path, (now + 0.01 * level(out),) * 2)
    log = tmp_path / "sbatch.jsonl"
    cmd = snakemake_cmd(work, configfile, "--profile", str(BATCHED), "--retries", "0",
                        "--slurm-init-seconds-before-status-checks", "1", timeout=120)
    result, output, _ = run(cmd, timeout=120, env={
        "PATH": f"{fake_slurm_tools(tmp_path)}{os.pathsep}{os.environ['PATH']}", "FAKE_SBATCH_LOG": str(log)})
    assert result.returncode not in (0, 124, 137), output[-3000:]
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(calls) == 1, f"one submission for the whole group, got {len(calls)}:\n{output[-3000:]}"
    args = calls[0]
    assert args[args.index("--comment") + 1].startswith("rule_tables_"), args
    # the group job's command names its members as rule:wildcards after --target-jobs
    words = shlex.split(next(a for a in args if a.startswith("--wrap="))[len("--wrap="):])
    first = words.index("--target-jobs") + 1
    targets = words[first : next(i for i in range(first, len(words)) if words[i].startswith("--"))]
    members = sorted((t.split(":")[0], sorted(kv.split("=", 1) for kv in t.split(":", 1)[1].split(",") if kv))
                     for t in targets)
    expected = sorted((job["rule"], sorted(map(list, job["wildcards"].items()))) for job in in_group)
    assert members == expected, targets
    members_mem = sorted(int(job["resources"]["mem_mb"]) for job in in_group)
    assert f"--cpus-per-task={cap}" in args, args
    assert int(args[args.index("--mem") + 1]) <= sum(members_mem[-cap:]) < sum(members_mem), args


# --- with SLURM ---------------------------------------------------------------------------------------


def _sinfo_works() -> bool:
    try:
        return subprocess.run(["sinfo", "-h"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _cluster_name() -> str:
    out = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, timeout=30).stdout
    match = re.search(r"^ClusterName\s*=\s*(\S+)", out, flags=re.M)
    return match.group(1) if match else ""


@pytest.fixture(scope="session")
def slurm_cluster():
    """The local test cluster: started here (and stopped at the end) with BONBON_SLURM_TESTS=1, or
    one already running; otherwise the SLURM tests are skipped."""
    if not HAVE_PLUGIN:
        message = ("snakemake-executor-plugin-slurm is not installed "
                   "(pip install snakemake-executor-plugin-slurm)")
        if FORCED:
            pytest.fail(message)
        pytest.skip(message)
    started = False
    if not _sinfo_works():
        if not FORCED:
            pytest.skip("no SLURM here: set BONBON_SLURM_TESTS=1 to start a local test cluster "
                        "(root, Debian/Ubuntu: scripts/slurm/start-local-cluster.sh), or start it beforehand")
        result = subprocess.run([str(START)], capture_output=True, text=True, timeout=900)
        if result.returncode != 0:
            pytest.fail(f"could not start the local SLURM cluster:\n{result.stdout}\n{result.stderr}")
        started = True
    if _cluster_name() != "bonbon":
        pytest.skip("sinfo answers, but not the local test cluster of scripts/slurm/start-local-cluster.sh "
                    f"(ClusterName {_cluster_name()!r}); these tests assume its partitions and fake GPUs")
    yield
    if started:
        subprocess.run([str(STOP)], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def slurm_profile(tmp_path_factory, slurm_cluster) -> Path:
    """profiles/slurm plus what the test cluster needs, as a second --profile (its keys replace the
    first's): squeue for job status (the cluster has no accounting database, so sacct cannot see jobs:
    with sacct Snakemake would wait for ever), fast polling, and the GPU rules cut to what the 2-CPU,
    24 GB node can give: 4 GB and one CPU each, so that two shards run at once on the two GPUs (the rest
    of set-resources, partitions and GPUs included, as in the profile)."""
    resources = copy.deepcopy(profile_config()["set-resources"])
    for res in resources.values():
        res["mem_mb"] = min(res["mem_mb"], 4000)
        res["cpus_per_task"] = 1
    folder = tmp_path_factory.mktemp("test-cluster-profile")
    (folder / "config.yaml").write_text(yaml.safe_dump({
        "slurm-status-command": "squeue",
        "slurm-init-seconds-before-status-checks": 1,
        "seconds-between-status-checks": 1,
        "slurm-keep-successful-logs": True,
        "latency-wait": 5,
        "set-resources": resources,
    }))
    return folder


@pytest.fixture(scope="module")
def slurm_run(tmp_path_factory, slurm_profile):
    """The tiny toy world to pairs on SLURM; job records taken right away (squeue/scontrol forget a
    job MinJobAge = 300 s after it ends)."""
    workdir = tmp_path_factory.mktemp("slurm-run")
    configfile = workdir / "test-config.yaml"
    configfile.write_text(yaml.safe_dump(TINY))
    cmd = snakemake_cmd(workdir, configfile, "--profile", str(slurm_profile), "--until", "pairs",
                        "gather_rewards", "--verbose",
                        timeout=SLURM_RUN_TIMEOUT)
    result, output, seconds = run(cmd, timeout=SLURM_RUN_TIMEOUT)
    jobs = {}
    for job_id, rule in re.findall(r"SLURM jobid (\d+) \(log: \S*/slurm_logs/rule_([A-Za-z0-9_]+)/", output):
        record = subprocess.run(["scontrol", "-d", "show", "job", job_id], capture_output=True, text=True,
                                timeout=30).stdout
        jobs[job_id] = (rule, record)
    print(f"SLURM run: {seconds:.1f} s, {len(jobs)} SLURM jobs")
    return {"workdir": workdir, "configfile": configfile, "result": result, "output": output,
            "seconds": seconds, "jobs": jobs, "profile": slurm_profile}


def test_workflow_runs_on_slurm_with_gpus_for_the_gpu_rules(slurm_run):
    result, output = slurm_run["result"], slurm_run["output"]
    assert result.returncode != 124, (f"Snakemake on SLURM did not finish in {SLURM_RUN_TIMEOUT} s:\n"
                                      f"{output[-6000:]}")
    assert result.returncode == 0, output[-6000:]
    for table in TABLES:
        assert (slurm_run["workdir"] / table).exists(), table
    calls = sbatch_calls(output)
    expected = profile_config()["set-resources"]
    for rule in ("generate", "score"):
        assert len(calls[rule]) == 4, calls[rule]  # two blocks of samples (0-2, 2-4) of two shards
        for call in calls[rule]:
            assert " --gpus=1" in call and f" -p {expected[rule]['slurm_partition']} " in call, call
            assert f" -t {expected[rule]['runtime']} " in call, call
    for rule in ("toy_corpus", "prompts", "gather_rewards", "pairs"):
        assert "--gpus" not in calls[rule][0] and " -p cpu " in calls[rule][0], calls[rule][0]
    # what SLURM itself recorded: each GPU job got one (fake) GPU device on the gpu partition
    rules = {}
    for rule, record in slurm_run["jobs"].values():
        rules.setdefault(rule, []).append(record)
    assert set(rules) >= {"toy_corpus", "toy_base_model", "prompts", "generate", "score", "pairs"}, set(rules)
    for rule in ("generate", "score"):
        for record in rules[rule]:
            assert "JobState=COMPLETED" in record, record
            assert "Partition=gpu" in record and "TresPerJob=gres:gpu:1" in record, record
            assert "JOB_GRES=gpu:fake:1" in record, record  # a device of the node's gres.conf
    for record in rules["pairs"]:
        assert "Partition=cpu" in record and "gres:gpu" not in record, record
    # generation jobs ran at the same time, one on each GPU
    spans = [re.search(r"StartTime=(\S+) EndTime=(\S+)", record).groups() for record in rules["generate"]]
    assert any(start_a < end_b and start_b < end_a for i, (start_a, end_a) in enumerate(spans)
               for start_b, end_b in spans[i + 1:]), spans


def test_slurm_results_equal_a_local_run(slurm_run, tmp_path):
    assert slurm_run["result"].returncode == 0, slurm_run["output"][-3000:]
    start = time.monotonic()
    run_workflow(tmp_path, TINY, "--until", "pairs", "gather_rewards")
    print(f"local run (--cores 2): {time.monotonic() - start:.1f} s; SLURM run: {slurm_run['seconds']:.1f} s")
    for table in TABLES:
        assert_frame_equal(pd.read_parquet(slurm_run["workdir"] / table), pd.read_parquet(tmp_path / table),
                           obj=table)


def test_more_gpus_than_the_cluster_has_fails_fast_with_slurms_reason(slurm_run, tmp_path):
    """A generate shard asks for 8 GPUs on a cluster whose node has 2: the submission is refused and
    Snakemake stops with SLURM's reason (after the profile's one retry), instead of waiting."""
    assert slurm_run["result"].returncode == 0, slurm_run["output"][-3000:]
    shutil.copytree(slurm_run["workdir"] / "results", tmp_path / "results")  # prompts and toy models
    # --set-resources on the command line replaces the profiles' whole set-resources: repeat the partition
    cmd = snakemake_cmd(tmp_path, slurm_run["configfile"], "--profile", str(slurm_run["profile"]),
                        "--forcerun", "generate", "--set-resources", "generate:gpu=8",
                        "generate:slurm_partition=gpu",
                        "--", "results/generate/toy/shards/samples0-2/1-of-2.parquet", timeout=300)
    result, output, seconds = run(cmd, timeout=300)
    assert result.returncode not in (0, 124, 137), (f"rc {result.returncode} after {seconds:.0f} s:\n"
                                                    f"{output[-4000:]}")
    assert seconds < 120, f"took {seconds:.0f} s to fail"
    assert "--gpus=8" in output
    assert "Requested node configuration is not available" in output, output[-4000:]
    assert "--attempt 2" in output, "retries: 1 resubmits the failed job once"
    assert "has been submitted with SLURM jobid" not in output, "refused at submission, never queued"
