"""Configs the tests start from: the default config (config/config.yaml) and copies of it with keys
replaced, a minimal config of runs filled with the schema's defaults, and the small toy world the
workflow-level tests run (test_workflow, test_figures)."""

import copy

import yaml
from snakemake.utils import validate

from bonbon.config import SCHEMA

from conftest import REPO

DEFAULT = yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def filled(**changes):
    config = copy.deepcopy(DEFAULT)
    config["datasets"]["toy"].setdefault("eval_fraction", 0.2)
    config.update(changes)
    return config


def base(**changes):
    config = {"datasets": {"toy": {"source": "toy"}, "hh": {"source": "toy"}}, "n_values": [2, 4, 8],
              "training": {"learning_rate": 1e-4, "max_length": 192}, "runs": []}
    config.update(changes)
    validate(config, str(SCHEMA))  # as the workflow does: fills every default
    return config


SMALL = {
    "datasets": {"toy": {"source": "toy"}},
    "n_values": [2, 4, 8],
    "toy": {
        "seed": 1, "n_dialogues": 1500, "n_prompts": 420, "eval_fraction": 0.25,
        "base_model": {"steps": 200, "batch_size": 16},
        "reward_model": {"steps": 80, "batch_size": 32},
        # the plumbing tests run the world they were written for: the proxy's flaw (longer answers, fewer
        # finished within 48 tokens) is pinned in tests/test_toy.py and measured in docs/judge-proxy.md
        "filler": {"rate": 0.0},
    },
    "generation": {"max_new_tokens": 48, "batch_size": 64, "seed": 3},
    "sft": {"training": {"optimizer": "adamw", "learning_rate": 5e-4, "warmup_steps": 2, "batch_size": 16,
                         "max_steps": 10, "max_length": 160, "max_prompt_length": 96,
                         "checkpoint_every": 100}},
    "training": {"optimizer": "rmsprop", "learning_rate": 1e-4, "warmup_steps": 5, "batch_size": 4,
                 "epochs": 2, "max_length": 160, "max_prompt_length": 96, "checkpoint_every": 3,
                 "log_every": 1},
    "runs": [{"loss": "bonbon", "beta": ["auto"], "alpha": [0.005], "n": [4], "datasets": ["toy"]}],
    "evaluation": {"checkpoints": {"steps": [3]}},  # every run's snapshot at step 3 is evaluated too
}
