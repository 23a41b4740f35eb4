"""Reward functions (models.reward / models.judge: {function: ...}) and the built-in lexicon scorers."""

import itertools
import math

import pandas as pd
import pytest

from bonbon.config import SCHEMA, ConfigError, check_config, check_reward_functions, schema_errors
from bonbon.pairs import select_pairs
from bonbon.reward_functions import RewardFunction, check_reward_function, load_scorer
from bonbon.score import score_samples

from conftest import REPO

CALLS = []


# reward functions the tests name as "test_reward_functions:<name>" (pytest puts tests/ on sys.path)
def word_count(conversations, responses, scale=1.0):
    CALLS.append(len(responses))
    return [scale * len(r.split()) for r in responses]


def last_user_turn_length(conversations, responses):
    return [float(len(c[-1]["content"])) for c in conversations]


def exact_answer(conversations, responses, answers):
    """A verifier: 1.0 where the response's last number is the answer to the question, else 0.0."""
    import re

    out = []
    for conversation, response in zip(conversations, responses, strict=True):
        expected = answers.get(conversation[-1]["content"])
        numbers = re.findall(r"-?\d+", response)
        out.append(float(expected is not None and bool(numbers) and numbers[-1] == str(expected)))
    return out


def too_few(conversations, responses):
    return [0.0] * (len(responses) - 1)


def not_finite(conversations, responses):
    return [math.nan if not r else 1.0 for r in responses]


COUNTER = itertools.count()


def changes(conversations, responses):
    return [float(next(COUNTER)) for _ in responses]


def broken(conversations, responses):
    raise RuntimeError("lexicon missing")


def test_a_reward_function_scores_into_the_reward_column():
    samples = pd.DataFrame({"prompt_id": ["a", "a", "b"], "sample_idx": [0, 1, 0],
                            "prompt": (["\n\nHuman: Hi there\n\nAssistant:"] * 2
                                       + ["\n\nHuman: Yo\n\nAssistant:"]),
                            "response": [" one two three", " one", ""]})
    model, tokenizer = load_scorer({"function": "test_reward_functions:word_count", "scale": 2.0})
    assert tokenizer is None and isinstance(model, RewardFunction)
    out, counts = score_samples(samples, model, tokenizer, batch_size=2)
    assert out["reward"].tolist() == [6.0, 2.0, 0.0]
    assert counts == {"rows": 3, "prompt_cut": 0, "prompt_and_response_cut": 0}
    # the conversation, not the rendered prompt: HH text is parsed into turns
    model, _ = load_scorer({"function": "test_reward_functions:last_user_turn_length"})
    judged, _ = score_samples(samples, model, None, batch_size=8, column="judge_reward")
    assert judged["judge_reward"].tolist() == [8.0, 8.0, 2.0]


def test_a_verifier_is_a_reward_function():
    setting = {"function": "test_reward_functions:exact_answer", "answers": {"What is 2 + 3?": 5}}
    check_reward_function(setting, "models.reward")
    verifier = RewardFunction(setting)
    question = [{"role": "user", "content": "What is 2 + 3?"}]
    assert verifier([question] * 3, ["It is 5.", "2 + 3 = 6", "no idea"]) == [1.0, 0.0, 0.0]


@pytest.mark.parametrize(("name", "message"), [
    ("no_such_module_x:f", r"models.judge.function: cannot import 'no_such_module_x' \(ModuleNotFoundError"),
    ("test_reward_functions:missing",
     r"models.judge.function: 'test_reward_functions' has no callable 'missing'"),
    ("test_reward_functions:too_few", r"models.judge: .*too_few returned 2 scores for 3 responses"),
    ("test_reward_functions:not_finite", r"models.judge: .*not_finite scored row 2 as nan"),
    ("test_reward_functions:changes", r"models.judge: .*changes is not deterministic"),
    ("test_reward_functions:broken",
     r"models.judge: .*broken fails on a probe batch of 3 rows \(RuntimeError: lexicon"),
])
def test_a_bad_reward_function_is_named_before_any_job(name, message):
    config = {"models": {"base": "toy", "reward": "toy", "judge": {"function": name}}}
    with pytest.raises(ConfigError, match=message):
        check_reward_functions(config)


def test_the_check_scores_a_probe_batch_twice():
    CALLS.clear()
    check_reward_functions({"models": {"base": "toy",
                                       "reward": {"function": "test_reward_functions:word_count"},
                                       "judge": None}})
    assert CALLS == [3, 3]


def test_schema_and_checks_of_model_settings():
    import copy

    import yaml

    config = copy.deepcopy(yaml.safe_load((REPO / "config" / "config.yaml").read_text()))
    config["models"] = {"base": "toy", "reward": {"function": "bonbon.scorers:vader"},
                        "judge": {"function": "bonbon.scorers:textblob"}}
    assert schema_errors(config, SCHEMA) == []
    config["models"]["judge"] = {"function": "not a spec"}
    assert any(e.startswith("config key models.judge") for e in schema_errors(config, SCHEMA))
    config["models"]["judge"] = {"gguf": "x.gguf", "bits": 4}
    assert any(e.startswith("config key models.judge") for e in schema_errors(config, SCHEMA))
    config["models"] = {"base": {"function": "bonbon.scorers:vader"}, "reward": "toy", "judge": None}
    assert any(e.startswith("config key models.base") for e in schema_errors(config, SCHEMA))
    config["datasets"]["toy"]["eval_fraction"] = 0.2
    config["models"] = {"base": {"gguf": "./no/such.gguf"}, "reward": {"gguf": "pkg_x:a.gguf"}, "judge": None}
    with pytest.raises(ConfigError) as error:
        check_config(config)
    assert "config key models.base.gguf: GGUF file './no/such.gguf' does not exist" in str(error.value)
    assert "config key models.reward: a GGUF file holds a language model" in str(error.value)
    config["models"] = {"base": {"gguf": "no_such_package_x:a.gguf"}, "reward": "toy", "judge": None}
    with pytest.raises(ConfigError,
                       match=r"models.base.gguf: package 'no_such_package_x' .* is not installed"):
        check_config(config)


def test_lexicon_scorers_tie_at_zero_and_pairs_drop_all_tied_prompts():
    pytest.importorskip("vaderSentiment")
    pytest.importorskip("textblob")
    from bonbon.scorers import textblob, vader

    texts = ["The table is made of wood.", "I absolutely loved this wonderful cafe!",
             "This was a terrible, awful day."]
    v, t = vader(None, texts), textblob(None, texts)
    assert v[0] == 0.0 and t[0] == 0.0  # no sentiment words: exactly 0, so such samples tie
    assert v[1] > 0.5 > -0.5 > v[2] and t[1] > 0 > t[2]
    assert v == vader(None, texts)
    for name in ("vader", "textblob"):
        check_reward_function({"function": f"bonbon.scorers:{name}"}, "models.reward")
    # two prompts of 4 samples: one all neutral (every reward 0.0, best == worst: no pair), one mixed
    rewards = pd.DataFrame({"prompt_id": ["p"] * 4 + ["q"] * 4, "sample_idx": [0, 1, 2, 3] * 2, "prompt": "x",
                            "response": texts[:1] * 4 + [texts[0], texts[1], texts[0], texts[2]]})
    rewards["reward"] = vader(None, rewards["response"].tolist())
    pairs, counts = select_pairs(rewards, 4)
    assert counts == {"prompts": 2, "pairs": 1, "all_tied": 1}
    assert pairs.iloc[0][["chosen_idx", "rejected_idx"]].tolist() == [1, 3]
