"""The tiny training world of test_train (also trained on by test_lora and test_trajectories; the
``world`` fixture of conftest.py builds it): its pair count and texts, its length limits, the
TrainConfig its runs start from, a model's parameters by name, and the exception a test crashes a
run with."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForCausalLM

from bonbon.theory import beta_star
from bonbon.train import TrainConfig, config_from_dict

N = 4
GOOD = [
    " Sure, check the bread every day.",
    " Happy to help: first clean the bike.",
    " Good question, water it.",
]
BAD = [" Just look it up yourself.", " I do not want to explain that.", " That is a strange thing to ask."]
MAX_PROMPT, MAX_LEN = 24, 48


def cfg(**overrides) -> TrainConfig:
    base = dict(
        loss="bonbon",
        beta=beta_star(N),
        alpha=0.005,
        learning_rate=1e-3,
        optimizer="adamw",
        warmup_steps=0,
        batch_size=4,
        max_steps=3,
        log_every=100,
        max_prompt_length=MAX_PROMPT,
        max_length=MAX_LEN,
        checkpoint_every=100,
        seed=0,
    )
    return config_from_dict({**base, **overrides})  # the rest: the schema's defaults


def params(model_dir: Path) -> dict[str, torch.Tensor]:
    return dict(AutoModelForCausalLM.from_pretrained(model_dir).named_parameters())


class Crash(RuntimeError):
    pass
