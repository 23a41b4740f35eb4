import numpy as np
import pandas as pd
import pytest

from bonbon.pairs import select_pairs


def rewards_table(rewards: dict[str, list[float]]) -> pd.DataFrame:
    rows = [
        {"prompt_id": pid, "prompt": f"P{pid}", "sample_idx": j, "response": f"{pid}-{j}", "reward": r,
         "finished": j != 1}
        for pid, values in rewards.items()
        for j, r in enumerate(values)
    ]
    return pd.DataFrame(rows).sample(frac=1.0, random_state=0)  # order of rows must not matter


def test_known_best_and_worst_with_nested_prefixes():
    table = rewards_table({"a": [0.1, 0.9, -0.3, 2.0], "b": [1.0, 0.5, 0.7, -1.0]})
    pairs2, _ = select_pairs(table, 2)
    pairs4, _ = select_pairs(table, 4)
    p2, p4 = pairs2.set_index("prompt_id"), pairs4.set_index("prompt_id")
    assert (p2.loc["a", "chosen_idx"], p2.loc["a", "rejected_idx"]) == (1, 0)
    assert (p2.loc["b", "chosen_idx"], p2.loc["b", "rejected_idx"]) == (0, 1)
    assert (p4.loc["a", "chosen_idx"], p4.loc["a", "rejected_idx"]) == (3, 2)
    assert (p4.loc["b", "chosen_idx"], p4.loc["b", "rejected_idx"]) == (0, 3)
    assert p4.loc["a", "chosen"] == "a-3" and p4.loc["a", "rejected"] == "a-2"
    assert p4.loc["a", "chosen_reward"] == 2.0 and p4.loc["a", "rejected_reward"] == -0.3
    assert p2.loc["a", "chosen_finished"] == np.False_ and p2.loc["a", "rejected_finished"] == np.True_
    assert (pairs4["n"] == 4).all() and (pairs2["n"] == 2).all()


def test_ties_drop_only_fully_tied_prompts():
    table = rewards_table({"tied": [0.5, 0.5, 0.5], "partly": [0.5, 0.5, 0.1], "top": [0.2, 0.9, 0.9]})
    pairs, counts = select_pairs(table, 3)
    assert counts == {"prompts": 3, "pairs": 2, "all_tied": 1}
    p = pairs.set_index("prompt_id")
    assert "tied" not in p.index
    assert (p.loc["partly", "chosen_idx"], p.loc["partly", "rejected_idx"]) == (0, 2)  # first of the tied best
    assert (p.loc["top", "chosen_idx"], p.loc["top", "rejected_idx"]) == (1, 0)
    assert (pairs["chosen_idx"] != pairs["rejected_idx"]).all()


def test_enumeration_against_brute_force():
    rng = np.random.default_rng(0)
    rewards = {f"p{i}": rng.normal(size=8).round(1).tolist() for i in range(200)}  # rounding makes ties
    table = rewards_table(rewards)
    for n in (2, 4, 8):
        pairs, counts = select_pairs(table, n)
        expected = {}
        for pid, values in rewards.items():
            first = values[:n]
            if max(first) != min(first):
                expected[pid] = (first.index(max(first)), first.index(min(first)))
        got = {r.prompt_id: (r.chosen_idx, r.rejected_idx) for r in pairs.itertuples()}
        assert got == expected
        assert counts["all_tied"] == 200 - len(expected)


def test_errors():
    table = rewards_table({"a": [0.1, 0.2], "b": [0.3, 0.4, 0.5, 0.6]})
    with pytest.raises(ValueError, match="fewer than n=4"):
        select_pairs(table, 4)
    with pytest.raises(ValueError, match="at least 2"):
        select_pairs(table, 1)
    nan = rewards_table({"a": [0.1, float("nan")]})
    with pytest.raises(ValueError, match="NaN"):
        select_pairs(nan, 2)
