"""The workflow through the Snakemake CLI: dry run, bad input, and the toy world end to end."""

import copy
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import yaml

from bonbon.theory import bon_win_rate

from conftest import HH_PROMPTS, REPO, run_workflow
from helpers.configs import SMALL

DEFAULT = yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def test_dry_run_of_the_default_dag(tmp_path):
    result = run_workflow(tmp_path, DEFAULT, "-n", "--quiet", "rules")
    for rule in ("toy_corpus", "toy_tokenizers", "toy_base_model", "toy_reward_model", "prompts", "generate",
                 "score", "pairs"):
        assert rule in result.stdout, result.stdout
    assert not (tmp_path / "results").exists()


def test_malformed_prompt_file_fails_with_file_and_row_and_leaves_no_output(tmp_path):
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"Prompt": ["\n\nHuman: ok?\n\nAssistant:", "no turns at all"]}).to_csv(bad, index=False)
    config = copy.deepcopy(SMALL)
    config["datasets"] = {"bad": {"source": "file", "path": str(bad)}}
    config["runs"] = []
    result = run_workflow(tmp_path, config, "--until", "prompts", check=False)
    assert result.returncode != 0
    # the file is read before any job starts (bonbon.config.check_prompt_files)
    assert ("config key datasets.bad.path: " in result.stderr
            and "bad.csv: row 2: does not start with" in result.stderr)
    assert not (tmp_path / "results").exists()


def write_local_hh(root, seed: int = 0) -> None:
    """A small dataset laid out like the hub's Anthropic/hh-rlhf (helpful-base/{train,test}.jsonl.gz):
    chosen and rejected dialogues share the prompt; chosen is the answer of higher toy quality."""
    import gzip
    import random

    from bonbon.toy import asked_task, make_answer, make_prompt

    rng = random.Random(seed)
    for split, rows in (("train", 48), ("test", 16)):
        lines = []
        for _ in range(rows):
            prompt = make_prompt(rng)
            (a, qa), (b, qb) = make_answer(rng, asked_task(prompt)), make_answer(rng, asked_task(prompt))
            chosen, rejected = (a, b) if qa >= qb else (b, a)
            lines.append(json.dumps({"chosen": f"{prompt} {chosen}", "rejected": f"{prompt} {rejected}"}))
        path = root / "helpful-base" / f"{split}.jsonl.gz"
        path.parent.mkdir(parents=True, exist_ok=True)
        with gzip.open(path, "wt") as handle:
            handle.write("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("workflow")
    config = copy.deepcopy(SMALL)
    # a local directory standing in for the hub's Anthropic/hh-rlhf: the hub code path, offline
    write_local_hh(workdir / "hh-rlhf")
    config["datasets"]["hhlocal"] = {"source": "hf", "path": str(workdir / "hh-rlhf"),
                                     "data_dir": "helpful-base"}
    config["runs"].append({"loss": "dpo", "source": "original", "beta": [0.1], "datasets": ["hhlocal"]})
    if HH_PROMPTS.exists():
        config["datasets"]["hh"] = {"source": "file", "path": str(HH_PROMPTS), "max_prompts": 24,
                                    "eval_fraction": 0.25}
    run_workflow(workdir, config, "--until", "pairs", "gather_samples", "gather_rewards")
    return workdir


def test_best_of_n_theorem_end_to_end(small_run):
    """Only a correct pipeline (independent samples, continuous rewards, the best of the first n) makes
    the best of n samples beat an independent sample of the same prompt at rate n/(n+1)."""
    rewards = pd.read_parquet(small_run / "results/score/toy/rewards.parquet")
    table = rewards.pivot(index="prompt_id", columns="sample_idx", values="reward")
    assert table.shape == (315, 8) and not table.isna().any().any()
    tied = (table.nunique(axis=1) < 8).mean()
    assert tied < 0.02, f"{tied:.1%} of prompts have tied rewards"
    for n in (2, 4):
        pairs = pd.read_parquet(small_run / f"results/pairs/toy/n{n}.parquet").set_index("prompt_id")
        assert (pairs["chosen_idx"] < n).all() and (pairs["rejected_idx"] < n).all()
        assert (pairs["chosen_reward"] > pairs["rejected_reward"]).all()
        opponents = table.loc[pairs.index, list(range(n, 8))].to_numpy()  # independent draws: index >= n
        best = pairs["chosen_reward"].to_numpy()[:, None]
        per_prompt = ((best > opponents) + 0.5 * (best == opponents)).mean(axis=1)
        rate, se = per_prompt.mean(), per_prompt.std(ddof=1) / np.sqrt(len(per_prompt))
        assert se < 0.02
        assert abs(rate - bon_win_rate(n)) < 3 * se, (n, rate, se)
        # the worst of n loses at the mirrored rate
        worst = pairs["rejected_reward"].to_numpy()[:, None]
        worst_rate = ((worst > opponents) + 0.5 * (worst == opponents)).mean()
        assert abs(worst_rate - 1 / (n + 1)) < 0.05


def test_sample_and_pair_tables(small_run):
    samples = pd.read_parquet(small_run / "results/generate/toy/samples.parquet")
    prompts = pd.read_parquet(small_run / "results/prompts/toy.parquet")
    assert set(samples["prompt_id"]) == set(prompts.loc[prompts["split"] == "train", "prompt_id"])
    assert samples["response"].nunique() > 0.9 * len(samples)  # varied text
    assert samples["finished"].mean() > 0.8
    assert (samples.loc[~samples["finished"], "n_tokens"] == 48).all()
    n8 = pd.read_parquet(small_run / "results/pairs/toy/n8.parquet")
    assert list(n8.columns[:9]) == ["prompt_id", "prompt", "chosen", "rejected", "chosen_reward",
                                    "rejected_reward", "chosen_idx", "rejected_idx", "chosen_finished"]
    rewards = pd.read_parquet(small_run / "results/score/toy/rewards.parquet")
    best = rewards.loc[rewards.groupby("prompt_id")["reward"].idxmax()].set_index("prompt_id")
    assert (n8.set_index("prompt_id")["chosen"] == best.loc[n8["prompt_id"], "response"]).all()


@pytest.mark.skipif(not HH_PROMPTS.exists(), reason=f"real HH prompts not present at {HH_PROMPTS}")
def test_real_hh_prompts_through_the_data_half(small_run):
    prompts = pd.read_parquet(small_run / "results/prompts/hh.parquet")
    assert len(prompts) == 24 and prompts["prompt"].str.endswith("\n\nAssistant:").all()
    samples = pd.read_parquet(small_run / "results/generate/hh/samples.parquet")
    assert len(samples) == 8 * (prompts["split"] == "train").sum()
    log = "".join(path.read_text() for path in sorted((small_run / "logs/score/hh").glob("*/*-of-*.log")))
    rewards = pd.read_parquet(small_run / "results/score/hh/rewards.parquet")
    assert rewards["reward"].notna().all()
    # real HH prompts are long: the toy reward model (64... 128 tokens) must cut most of them, and say so
    assert "'prompt_cut': 0," not in log
    pairs = pd.read_parquet(small_run / "results/pairs/hh/n8.parquet")
    assert len(pairs) >= 0.9 * (prompts["split"] == "train").sum()


def test_killed_training_job_resumes_from_its_checkpoint(small_run):
    """A training job killed (SIGKILL, the whole Snakemake process group) after its first checkpoint
    resumes from it when Snakemake reruns it, and ends at the same step count."""
    run = "toy-n4-bonbon-betaauto-alpha0.005"
    target = f"results/models/{run}/train_summary.json"
    config_file = small_run / "test-config.yaml"
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(small_run),
           "--configfile", str(config_file), "--cores", "2", target]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    checkpoints = small_run / "results" / "models" / run / "checkpoints"
    job = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           start_new_session=True)
    deadline = time.monotonic() + 300
    while not list(checkpoints.glob("step-*")):
        assert job.poll() is None, "the job ended before its first checkpoint"
        assert time.monotonic() < deadline, "no checkpoint after 300 s"
        time.sleep(0.1)
    os.killpg(job.pid, signal.SIGKILL)
    job.wait()
    assert not (small_run / target).exists()
    first = sorted(checkpoints.glob("step-*"))[-1].name

    # a killed Snakemake leaves its lock: a user unlocks, then reruns (Snakemake asks for --rerun-incomplete)
    subprocess.run([*cmd, "--unlock"], env=env, check=True, capture_output=True)
    rerun = subprocess.run([*cmd, "--rerun-incomplete"], env=env, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr[-4000:]
    log = (small_run / "logs" / "train" / f"{run}.log").read_text()
    assert "resuming from" in log and "at step 0 " not in log, log[-2000:]
    summary = json.loads((small_run / target).read_text())
    pairs = len(pd.read_parquet(small_run / "results/pairs/toy/n4.parquet"))
    assert 0.95 * pairs <= summary["examples"] <= pairs
    # two epochs of 4 pairs a step, as if never killed
    assert summary["steps"] == 2 * (summary["examples"] // 4)
    assert summary["resumed_from_step"] >= int(first.split("-")[1]) > 0
    metrics = pd.read_csv(small_run / "results" / "models" / run / "metrics.csv")
    assert metrics["step"].tolist() == list(range(summary["steps"]))  # no step twice, none missing

    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(small_run / "results" / "models" / run)


def rendered_text(html: str) -> str:
    """The text of a page that its scripts rendered, without the scripts and styles themselves."""
    from html.parser import HTMLParser

    class Text(HTMLParser):
        def __init__(self):
            super().__init__()
            self.depth, self.parts = 0, []

        def handle_starttag(self, tag, attrs):
            self.depth += tag in ("script", "style")

        def handle_endtag(self, tag):
            self.depth -= tag in ("script", "style")

        def handle_data(self, data):
            if not self.depth and data.strip():
                self.parts.append(data.strip())

    parser = Text()
    parser.feed(html)
    return "\n".join(parser.parts)


def test_whole_workflow_to_report(small_run, tmp_path):
    """Toy world -> report: the evaluation agrees with the best-of-n theory, and the report opens in a
    real headless browser with the frontier plot and the summary table in it."""
    run_workflow(small_run, yaml.safe_load((small_run / "test-config.yaml").read_text()))
    summary = pd.read_parquet(small_run / "results/eval/summary.parquet").set_index("policy")
    summary = summary[summary["dataset"] == "toy"]  # the real HH prompts, where present, are evaluated too
    run = "toy-n4-bonbon-betaauto-alpha0.005"
    assert set(summary.index) == {"toy-reference", "toy-bon-n2", "toy-bon-n4", "toy-bon-n8", run,
                                  f"{run}-step3"}
    # the trajectory: the snapshot at step 3 is its own row of the run, the final model has the last step
    steps = json.loads((small_run / f"results/models/{run}/train_summary.json").read_text())["steps"]
    assert summary.loc[f"{run}-step3", ["run", "step"]].tolist() == [run, 3]
    assert summary.loc[run, ["run", "step"]].tolist() == [run, steps]
    runs = pd.read_parquet(small_run / "results/eval/runs.parquet").set_index("run")
    assert runs.loc[run, "checkpoints"] == 2 and runs.loc[run, "final_step"] == steps
    assert (summary["n_samples"] == 2 * summary["n_prompts"]).all() and (summary["n_prompts"] == 105).all()
    # every sample against 16 reference opponents of its prompt; the reference row is the calibration
    assert (summary["n_opponents"] == 16).all()
    assert summary.loc["toy-reference", "calibration"].startswith(("ok: ", "OFF: "))
    for n in (2, 4, 8):
        row = summary.loc[f"toy-bon-n{n}"]
        assert abs(row["win_rate"] - n / (n + 1)) < 3 * row["win_rate_se"], (n, row["win_rate"],
                                                                             row["win_rate_se"])
        assert row["kl_method"] == "analytic" and row["kl"] == pytest.approx(np.log(n) - (n - 1) / n)
    trained = summary.loc["toy-n4-bonbon-betaauto-alpha0.005"]
    # the original HH-format pairs of a hub-layout dataset were loaded, trained on and evaluated
    original = json.loads((small_run / "results/models/hhlocal-original-dpo-beta0.1/train_summary.json")
                          .read_text())
    assert original["examples"] >= 40 and original["steps"] == 2 * (original["examples"] // 4)
    hh_summary = pd.read_parquet(small_run / "results/eval/summary.parquet").set_index("policy")
    hh_prompts = pd.read_parquet(small_run / "results/prompts/hhlocal.parquet")
    # HH's test split (16 rows, less prompts seen twice) is the eval set
    assert (hh_summary.loc["hhlocal-original-dpo-beta0.1", "n_prompts"]
            == (hh_prompts["split"] == "eval").sum() >= 12)
    assert trained["kl_method"] == "monte_carlo" and trained["kl"] > 0 and trained["kl_se"] > 0
    assert trained["beta"] == pytest.approx(1 / 11)
    csv = pd.read_csv(small_run / "results/eval/summary.csv")
    assert list(csv.columns[:13]) == ["policy", "dataset", "kind", "run", "step", "loss", "n", "beta",
                                      "alpha", "win_rate", "win_rate_se", "kl", "kl_se"]

    # adding a checkpoint samples only that checkpoint: no training, no other policy's sampling
    config = yaml.safe_load((small_run / "test-config.yaml").read_text())
    config["evaluation"]["checkpoints"]["steps"] = [3, 6]
    grown = small_run / "grown-config.yaml"
    grown.write_text(yaml.safe_dump(config))
    dry = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d",
                          str(small_run), "--configfile", str(grown), "-n", "--quiet", "rules"],
                         capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    assert dry.returncode == 0, dry.stderr[-3000:]
    planned = {line.split()[0]: int(line.split()[1]) for line in dry.stdout.splitlines()
               if len(line.split()) == 2 and line.split()[1].isdigit()}
    assert "train" not in planned and "generate" not in planned, dry.stdout
    assert planned.get("sample") == 2, dry.stdout  # step 6 of the toy run and of the original-pairs run

    report = small_run / "results" / "report.html"
    result = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d",
                             str(small_run), "--configfile", str(small_run / "test-config.yaml"), "--report",
                             str(report)],
                            capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    assert result.returncode == 0, result.stderr[-3000:]
    html = report.read_text()
    # the figure and the table are embedded
    assert "filename=frontier.png;base64" in html and "toy-bon-n8" in html

    import shutil

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("no chromium on this machine (Debian: apt-get install chromium); "
                    "the report was built but not opened")
    dom = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'chromium'}", "--virtual-time-budget=15000", "--dump-dom",
         report.as_uri()],
        capture_output=True, text=True, timeout=120,
    ).stdout
    text = rendered_text(dom)
    # these appear only once the report's scripts have run and rendered its navigation
    for heading in ("Results", "1. Frontier", "2. Evaluation", "3. Best-of-n theory", "4. Training"):
        assert heading in text.splitlines(), text[:2000]
    assert "Win rate vs KL" in dom or "frontier.png" in dom  # the frontier figure is in the page
    assert "toy-n4-bonbon-betaauto-alpha0.005" in dom  # and so is the summary table
