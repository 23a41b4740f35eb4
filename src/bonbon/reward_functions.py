"""Reward functions: ``models.reward`` / ``models.judge`` given as a Python callable instead of a model.

A setting ``{function: "package.module:name", **options}`` names a callable

    name(conversations, responses, **options) -> sequence of floats, one per row

``conversations[i]`` is the prompt of row i as a list of turns ``{"role", "content"}`` ending with the
user's (HH text prompts are parsed into turns; chat prompts carry theirs), ``responses[i]`` the sampled
text. The rewards go into the same ``reward`` / ``judge_reward`` columns as a reward model's, so pairs,
training and evaluation do not know which it was. :func:`check_reward_function` runs before any job.
Built-in scorers: :mod:`bonbon.scorers`. Writing a verifier: docs/reward-functions.md.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from bonbon.chat import hh_to_messages, parse_messages
from bonbon.models import load_reward_model

# what the check before any job scores: a positive, a negative and an empty response, and a chat prompt
PROBE_CONVERSATIONS = [
    [{"role": "user", "content": "Write a short review of a cafe."}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2 + 3?"}],
    [{"role": "user", "content": "Describe a rainy day."}],
]
PROBE_RESPONSES = ["A wonderful place, I loved the coffee.", "The answer is 5.", ""]


class RewardFunctionError(ValueError):
    """A reward function that cannot be imported or gives unusable scores; the message names the key."""


def is_reward_function(setting: Any) -> bool:
    return isinstance(setting, Mapping) and "function" in setting


def resolve_function(spec: str, key: str = "models.reward") -> Callable:
    """The callable that ``"package.module:name"`` names."""
    module_name, sep, name = spec.partition(":")
    if not sep or not module_name or not name:
        raise RewardFunctionError(f"config key {key}.function: {spec!r} is not 'package.module:name'")
    try:
        module = importlib.import_module(module_name)
    except Exception as error:  # not installed, or fails on import: either way it cannot score
        raise RewardFunctionError(f"config key {key}.function: cannot import {module_name!r} "
                                  f"({type(error).__name__}: {error})") from error
    target: Any = module
    for part in name.split("."):
        target = getattr(target, part, None)
    if not callable(target):
        raise RewardFunctionError(f"config key {key}.function: {module_name!r} has no callable {name!r}")
    return target


class RewardFunction:
    """A ``{function: ..., **options}`` setting, loaded: ``score`` gives one finite float per row."""

    def __init__(self, setting: Mapping[str, Any], key: str = "models.reward"):
        self.spec = str(setting["function"])
        self.options = {k: v for k, v in setting.items() if k != "function"}
        self.key = key
        self.function = resolve_function(self.spec, key)

    def __repr__(self) -> str:
        return f"RewardFunction({self.spec}, {self.options})"

    def __call__(self, conversations: Sequence[list], responses: Sequence[str]) -> list[float]:
        values = self.function(list(conversations), list(responses), **self.options)
        try:
            values = [float(v) for v in values]
        except (TypeError, ValueError) as error:
            raise RewardFunctionError(f"config key {self.key}: {self.spec} returned {type(values).__name__}, "
                                      f"not a sequence of numbers ({error})") from error
        if len(values) != len(responses):
            raise RewardFunctionError(f"config key {self.key}: {self.spec} returned {len(values)} scores for "
                                      f"{len(responses)} responses (one per row)")
        for i, value in enumerate(values):
            if not math.isfinite(value):
                raise RewardFunctionError(f"config key {self.key}: {self.spec} scored row {i} as {value} "
                                          f"(response {responses[i][:60]!r}); scores must be finite")
        return values

    def score(self, prompts: Sequence[str], responses: Sequence[str], messages: Sequence | None = None,
              batch_size: int = 256, desc: str = "score") -> list[float]:
        """Scores of (prompt, response) rows in batches; a row that fails is named by its index."""
        conversations = [parse_messages(messages[i], "messages") if messages is not None
                         else hh_to_messages(prompts[i]) for i in range(len(prompts))]
        out: list[float] = []
        for start in tqdm(range(0, len(prompts), batch_size), desc=desc, mininterval=5):
            stop = min(start + batch_size, len(prompts))
            try:
                out += self(conversations[start:stop], responses[start:stop])
            except RewardFunctionError as error:
                raise RewardFunctionError(f"{error} (rows {start}..{stop - 1} of this table)") from error
        return out


def check_reward_function(setting: Mapping[str, Any], key: str) -> None:
    """Before any job: import it, score a probe batch, and score it again: the scores must be finite
    floats, one per row, and the same on the repeat (a reward that changes between calls would make
    best and worst depend on when a shard ran)."""
    function = RewardFunction(setting, key)
    try:
        first = function(PROBE_CONVERSATIONS, PROBE_RESPONSES)
        again = function(PROBE_CONVERSATIONS, PROBE_RESPONSES)
    except RewardFunctionError:
        raise
    except Exception as error:
        raise RewardFunctionError(f"config key {key}: {function.spec} fails on a probe batch of "
                                  f"{len(PROBE_RESPONSES)} rows ({type(error).__name__}: {error})") from error
    if first != again:
        raise RewardFunctionError(f"config key {key}: {function.spec} is not deterministic: the probe batch "
                                  f"scored {first}, then {again}")


def load_scorer(setting: str | Path | Mapping[str, Any], device: str = "cpu") -> tuple[Any, Any]:
    """What scores (prompt, response) rows for ``models.reward`` / ``models.judge``: a reward function
    setting (``{function: ...}``) as a :class:`RewardFunction` and no tokenizer, else the reward model
    and its tokenizer (:func:`bonbon.models.load_reward_model`). Here, not in models, so that models
    does not import this module back (chat imports models)."""
    if is_reward_function(setting):
        return RewardFunction(setting), None
    return load_reward_model(setting, device)
