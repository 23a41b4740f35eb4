"""Shared fixtures: tiny toy models built once per test session, the tiny training world of test_train
(built once per module that asks for it), and a way to run the workflow."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
HH_PROMPTS = REPO.parent / "shared" / "data" / "hh_prompt_subset.csv"


@pytest.fixture(scope="session", autouse=True)
def warm_servers():
    """The session's workflow jobs share warm servers of their own (bonbon.warm: a short directory, a
    socket's path holds 107 bytes), stopped when the session ends."""
    import shutil
    import tempfile

    from bonbon import warm

    folder = tempfile.mkdtemp(prefix="bw", dir="/tmp")
    before = os.environ.get("BONBON_WARM_DIR")
    os.environ["BONBON_WARM_DIR"] = folder
    yield Path(folder)
    warm.stop_servers()
    shutil.rmtree(folder, ignore_errors=True)
    if before is None:
        del os.environ["BONBON_WARM_DIR"]
    else:
        os.environ["BONBON_WARM_DIR"] = before


@pytest.fixture(scope="session")
def toy_models(tmp_path_factory) -> dict[str, Path]:
    """A tiny toy world (tokenizers, base model, reward model) trained for a few steps."""
    import torch

    from bonbon import toy

    torch.set_num_threads(2)
    root = tmp_path_factory.mktemp("toy")
    corpus = toy.make_corpus(600, seed=1)
    toy.train_tokenizers((corpus["prompt"] + corpus["response"]).tolist(), 512, root / "tok_policy",
                         root / "tok_reward", max_length=64)
    small = toy.ToyModelConfig(hidden_size=32, num_layers=1, num_heads=2, steps=40, batch_size=16)
    toy.pretrain_base_model(corpus, root / "tok_policy", root / "base", small, seed=1)
    toy.train_reward_model(corpus, root / "tok_reward", root / "reward", small, seed=1)
    return {"base": root / "base", "reward": root / "reward", "root": root}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Tokenizer + tiny policy saved together, 32 pairs (one emptied), their reference log-probs."""
    import pandas as pd

    from bonbon.reference import write_reference_logps

    from helpers.tiny import hh_prompt, save_tiny_policy
    from helpers.training import BAD, GOOD, MAX_LEN, MAX_PROMPT, N

    root = tmp_path_factory.mktemp("world")
    model_dir = root / "base"
    tokenizer = save_tiny_policy(model_dir)
    rng = random.Random(5)
    rows = [
        {
            "prompt_id": f"p{i:03d}",
            "prompt": hh_prompt(rng, rng.randint(1, 3)),
            "chosen": rng.choice(GOOD),
            "rejected": rng.choice(BAD),
            "chosen_reward": 1.0,
            "rejected_reward": -1.0,
            "chosen_idx": rng.randrange(N),
            "rejected_idx": N + i,  # distinct from chosen_idx
            "n": N,
        }
        for i in range(33)
    ]
    rows[7]["rejected"] = ""  # dropped by tokenization: NaN reference, skipped by training
    pairs = root / "n4.parquet"
    pd.DataFrame(rows).to_parquet(pairs)
    ref = root / "ref.parquet"
    write_reference_logps(model_dir, pairs, ref, MAX_PROMPT, MAX_LEN, batch_size=16)
    return {"model": model_dir, "pairs": pairs, "ref": ref, "tokenizer": tokenizer, "root": root}


def run_workflow(workdir: Path, config: dict, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run the workflow with ``config`` in ``workdir`` through the Snakemake CLI."""
    workdir.mkdir(parents=True, exist_ok=True)
    configfile = workdir / "test-config.yaml"
    configfile.write_text(yaml.safe_dump(config))
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir),
           "--configfile", str(configfile), "--cores", "2", *args]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    result = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake failed ({result.returncode}):\n"
                             f"{result.stdout[-4000:]}\n{result.stderr[-8000:]}")
    return result
