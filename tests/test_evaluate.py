import math

import numpy as np
import pandas as pd
import pytest

from bonbon.evaluate import (
    best_of_n_samples,
    candidate_samples,
    pair_with_opponents,
    summarize,
    summary_table,
)
from bonbon.sampling import policy_seed
from bonbon.theory import bon_kl


def reference_table(rewards: dict[str, list[float]]) -> pd.DataFrame:
    return pd.DataFrame([
        {"prompt_id": pid, "sample_idx": j, "reward": r, "response": f"{pid}-{j}", "n_tokens": j + 1,
         "finished": True}
        for pid, values in rewards.items() for j, r in enumerate(values)
    ])


def test_best_of_n_takes_the_best_of_each_replicate_and_never_an_opponent():
    k = 2
    # samples 0,1 are opponents; candidate k + p*k + j: replicate 0 = 2,4,6,8, replicate 1 = 3,5,7,9
    rewards = {"a": [9.0, 9.0, 0.1, 0.5, 0.3, 0.9, 0.2, 0.8, 0.7, 0.0]}
    ref = reference_table(rewards)
    bon2 = best_of_n_samples(ref, 2, k).set_index("sample_idx")
    assert bon2.loc[0, "response"] == "a-4" and bon2.loc[1, "response"] == "a-5"
    bon4 = best_of_n_samples(ref, 4, k).set_index("sample_idx")
    assert bon4.loc[0, "response"] == "a-8" and bon4.loc[1, "response"] == "a-5"
    bon1 = best_of_n_samples(ref, 1, k).set_index("sample_idx")
    assert bon1.loc[0, "response"] == "a-2" and bon1.loc[1, "response"] == "a-3"
    # best-of-2 reads only candidates 2..5: the table cut there gives the same rows
    pd.testing.assert_frame_equal(best_of_n_samples(ref[ref["sample_idx"] < 6], 2, k),
                                  best_of_n_samples(ref, 2, k))
    # a tie goes to the first position drawn
    tied = reference_table({"a": [0.0, 0.0, 1.0, 0.0, 1.0, 0.0]})
    assert best_of_n_samples(tied, 2, k).set_index("sample_idx").loc[0, "response"] == "a-2"
    with pytest.raises(ValueError, match="replicates of 5"):
        best_of_n_samples(ref, 5, k)
    with pytest.raises(ValueError, match="replicates of 4"):
        best_of_n_samples(ref[ref["sample_idx"] != 9], 4, k)
    # candidate positions [a, b) in blocks, as the workflow draws them: [0, 2) then [2, 4)
    assert candidate_samples((0, 2), k) == (2, 6) and candidate_samples((2, 4), k) == (6, 10)


def test_best_of_n_win_rate_matches_theory_on_continuous_rewards():
    rng = np.random.default_rng(0)
    k, n_max, prompts = 4, 8, 2000
    ref = reference_table({f"p{i}": rng.normal(size=candidate_samples((0, n_max), k)[1]).tolist()
                           for i in range(prompts)})
    # their own draws
    opponents = reference_table({f"p{i}": rng.normal(size=16).tolist() for i in range(prompts)})
    for n in (1, 2, 4, 8):
        table = pair_with_opponents(best_of_n_samples(ref, n, k), opponents, k, 16, "test")
        row = summarize(table.assign(policy_logp=0.0, reference_logp=0.0), f"bon-n{n}", "best_of_n",
                        dataset="d", n=n)
        assert abs(row["win_rate"] - n / (n + 1)) < 3 * row["win_rate_se"]
        assert row["kl"] == pytest.approx(bon_kl(n)) and row["kl_method"] == "analytic"


def test_opponents_and_errors():
    ref = reference_table({"a": [1.0, 2.0], "b": [0.5, 0.5]})
    policy = reference_table({"a": [1.5, 2.0], "b": [0.5, 0.1]})
    table = pair_with_opponents(policy, ref, 2, 2, "policy.parquet")
    # every sample against both opponents of its prompt (it was: sample j against opponent j only, 1, ½, ½, 0)
    assert table.sort_values(["prompt_id", "sample_idx"])["win"].tolist() == [0.5, 0.75, 0.5, 0.0]
    with pytest.raises(ValueError, match=r"policy\.parquet: no samples to evaluate \(zero rows\)"):
        pair_with_opponents(policy.iloc[:0], ref, 2, 2, "policy.parquet")
    with pytest.raises(ValueError, match=r"policy\.parquet: prompt 'c' has no reference opponents"):
        pair_with_opponents(reference_table({"c": [1.0]}), ref, 2, 2, "policy.parquet")


def test_summarize_kl_and_its_validity():
    table = reference_table({"a": [1.0, 2.0], "b": [0.0, 3.0]})
    # each sample's win against an opponent scored 0, 2, 1, 1
    table = table.assign(win=[1.0, 0.5, 0.0, 1.0], opponents=1, policy_logp=[-1.0, -2.0, -1.5, -2.5],
                         reference_logp=[-2.0, -2.5, -2.0, -3.5])
    row = summarize(table, "run", "trained", dataset="d", loss="bonbon", n=8, beta=0.0275, alpha=0.005,
                    sampling={"temperature": 1.0, "top_k": 0, "top_p": 1.0})
    assert row["kl"] == pytest.approx((1.0 + 0.5 + 0.5 + 1.0) / 4) and row["kl_method"] == "monte_carlo"
    assert row["win_rate"] == pytest.approx((1 + 0.5 + 0 + 1) / 4)
    assert row["mean_length"] == pytest.approx(1.5) and row["n_prompts"] == 2
    # bootstrap over the 2 prompts: per-prompt win means 0.75 and 0.5, log-ratio means 0.75 and 0.75
    assert (row["win_rate_ci_low"], row["win_rate_ci_high"]) == pytest.approx((0.5, 0.75))
    assert (row["kl_ci_low"], row["kl_ci_high"]) == pytest.approx((0.75, 0.75))
    hot = summarize(table, "run", "trained", dataset="d",
                    sampling={"temperature": 0.7, "top_k": 0, "top_p": 1.0})
    assert math.isnan(hot["kl"]) and hot["kl_method"].startswith("invalid")
    frame = summary_table([row, summarize(table, "ref", "reference", dataset="d")])
    assert frame["policy"].tolist() == ["ref", "run"]
    assert policy_seed(0, "a") != policy_seed(0, "b") and policy_seed(0, "a") == policy_seed(0, "a")


def test_best_of_n_with_a_whole_replicate_missing_is_an_error():
    """k = 2 replicates of n = 2 draws: prompt b lacks every candidate of replicate 1 (samples 3 and 5), so
    each of its remaining replicates is complete but it has one replicate, not two. Pins checking only the
    draws per replicate (b would silently be evaluated on half its samples), and the count of positions."""
    k = 2
    ref = reference_table({"a": [0.0, 0.0, 0.1, 0.5, 0.3, 0.9], "b": [0.0, 0.0, 0.4, 0.0, 0.2, 0.0]})
    assert len(best_of_n_samples(ref, 2, k)) == 4
    with pytest.raises(ValueError, match="do not hold 2 replicates of 2 best-of-n draws"):
        best_of_n_samples(ref[~((ref["prompt_id"] == "b") & ref["sample_idx"].isin([3, 5]))], 2, k)
    # one draw of one replicate missing
    with pytest.raises(ValueError, match="do not hold 2 replicates of 2"):
        best_of_n_samples(ref[~((ref["prompt_id"] == "b") & (ref["sample_idx"] == 5))], 2, k)
    with pytest.raises(ValueError, match="n >= 1"):
        best_of_n_samples(ref, 0, k)


def test_the_judges_win_rate_and_interval_are_the_judges():
    """The judge's verdicts disagree with the proxy's everywhere here: its win rate against every opponent
    of the prompt, clustered SE and bootstrap interval over prompts are computed from the judge's rewards.
    Pins the judge interval from the proxy's wins, the judge's opponents not the same reference samples,
    and the interval not clustered by prompt. (Ported to the all-opponents comparison of issue 21.)"""
    from bonbon.evaluate import add_judge_wins, summarize_judge
    from bonbon.metrics import bootstrap_ci, win_rate_vs_opponents

    ref = reference_table({"a": [1.0, 2.0], "b": [0.5, 0.5], "c": [0.0, 1.0]}).assign(
        judge_reward=[3.0, 0.0, 1.0, 2.0, 5.0, 5.0])
    policy = reference_table({"a": [1.5, 2.5], "b": [0.9, 0.1], "c": [1.0, 0.0]}).assign(
        judge_reward=[2.0, 1.0, 0.0, 2.0, 6.0, 6.0])
    table = add_judge_wins(pair_with_opponents(policy, ref, 2, 2, "p"), ref, 2, "p")
    ordered = table.sort_values(["prompt_id", "sample_idx"])
    # a: 2 and 1 against {3, 0}; b: 0 and 2 against {1, 2}; c: 6 and 6 against {5, 5}
    assert ordered["judge_win"].tolist() == [0.5, 0.5, 0.0, 0.75, 1.0, 1.0]
    assert ordered["win"].tolist() == [0.5, 1.0, 1.0, 0.0, 0.75, 0.25]  # the proxy's, unchanged
    row = summarize_judge(table)
    assert row["judge_win_rate"] == pytest.approx(3.75 / 6)
    assert row["judge_win_rate_se"] == pytest.approx(
        win_rate_vs_opponents(table["judge_reward"], table["prompt_id"], ref["judge_reward"],
                              ref["prompt_id"])[1])
    # per-prompt judge means a 0.5, b 0.375, c 1.0: a bootstrap over 3 prompts stays within [0.375, 1.0]
    low, high = row["judge_win_rate_ci_low"], row["judge_win_rate_ci_high"]
    assert (low, high) == pytest.approx(bootstrap_ci(table["judge_win"], table["prompt_id"]))
    assert 0.375 <= low < 3.75 / 6 < high <= 1.0
    assert row["mean_judge_reward"] == pytest.approx(17 / 6)  # the policy's, not its opponents' 16 / 6
    with pytest.raises(ValueError, match="p: prompt 'a' has an opponent without judge_reward"):
        add_judge_wins(pair_with_opponents(policy, ref, 2, 2, "p"), ref.assign(judge_reward=math.nan), 2, "p")
