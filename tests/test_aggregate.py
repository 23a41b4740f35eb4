"""The proxy-judge agreement and the mean over training seeds (bonbon.aggregate)."""

import math

import numpy as np
import pandas as pd
import pytest

from bonbon.aggregate import SEED_COLUMNS, reward_agreement, seed_table


def test_agreement_by_hand():
    same = pd.DataFrame({"reward": [1.0, 2.0, 3.0, 4.0], "judge_reward": [2.0, 4.0, 6.0, 8.0]})
    assert reward_agreement(same) == pytest.approx({"proxy_judge_corr": 1.0, "proxy_judge_rank_corr": 1.0})
    opposite = same.assign(judge_reward=[4.0, 3.0, 2.0, 1.0])
    assert reward_agreement(opposite) == pytest.approx({"proxy_judge_corr": -1.0,
                                                        "proxy_judge_rank_corr": -1.0})
    # x = (1, 2, 3), y = (1, 3, 2): centred (-1, 0, 1) . (-1, 1, 0) = 1 over 2: r = 0.5; ranks equal the
    # values
    swapped = pd.DataFrame({"reward": [1.0, 2.0, 3.0], "judge_reward": [1.0, 3.0, 2.0]})
    assert reward_agreement(swapped) == pytest.approx({"proxy_judge_corr": 0.5, "proxy_judge_rank_corr": 0.5})
    # Spearman is Pearson's on ranks: a monotone but curved judge agrees in rank exactly, not linearly
    curved = pd.DataFrame({"reward": [0.0, 1.0, 2.0, 3.0], "judge_reward": [0.0, 1.0, 8.0, 27.0]})
    got = reward_agreement(curved)
    assert got["proxy_judge_rank_corr"] == pytest.approx(1.0) and got["proxy_judge_corr"] < 0.97
    constant = same.assign(judge_reward=1.0)
    assert all(math.isnan(v) for v in reward_agreement(constant).values())


def replicated(values, ses, seeds=(0, 1, 2), step=40, base="toy-n8-ipo-betaauto"):
    return pd.DataFrame({
        "run": [f"{base}-seed{s}" for s in seeds], "step": step, "dataset": "toy", "loss": "ipo", "n": 8,
        "beta": 0.0275, "alpha": None, "win_rate": values, "win_rate_se": ses,
        "mean_length": [30.0, 32.0, 34.0][:len(values)],
    })


REPLICATES = {f"toy-n8-ipo-betaauto-seed{s}": {"base_run": "toy-n8-ipo-betaauto", "seed": s}
              for s in (0, 1, 2)}


def test_mean_over_seeds_and_both_standard_errors():
    table = replicated([0.6, 0.7, 0.8], [0.03, 0.04, 0.05])
    table = pd.concat([table, pd.DataFrame({"run": [None], "step": [None], "win_rate": [0.5]})])  # not a run
    seeds = seed_table(table, REPLICATES, ["win_rate", "mean_length", "not_a_column"], keys=["step"])
    assert list(seeds.columns) == list(SEED_COLUMNS)
    assert seeds["metric"].tolist() == ["win_rate", "mean_length"]  # a missing metric is skipped
    win = seeds.iloc[0]
    assert win["base_run"] == "toy-n8-ipo-betaauto" and win["step"] == 40 and win["n"] == 8
    assert win["n_seeds"] == 3 and win["seeds"] == "0,1,2"
    assert win["mean"] == pytest.approx(0.7)
    assert win["seed_sd"] == pytest.approx(0.1)  # ddof 1: sqrt((0.01 + 0 + 0.01) / 2)
    assert win["seed_se"] == pytest.approx(0.1 / math.sqrt(3))
    assert win["sampling_se"] == pytest.approx(math.sqrt(0.03**2 + 0.04**2 + 0.05**2) / 3)
    length = seeds.iloc[1]
    assert length["mean"] == pytest.approx(32.0) and math.isnan(length["sampling_se"])  # no mean_length_se


def test_steps_are_kept_apart_and_one_seed_has_no_seed_se():
    table = pd.concat([replicated([0.6, 0.7, 0.8], [0.03] * 3, step=8),
                       replicated([0.5, 0.9, 0.7], [0.03] * 3, step=40)])
    seeds = seed_table(table, REPLICATES, ["win_rate"], keys=["step"])
    assert seeds["step"].tolist() == [8, 40] and seeds["mean"].tolist() == pytest.approx([0.7, 0.7])
    assert seeds["seed_sd"].tolist() == pytest.approx([0.1, 0.2])
    # pooled over steps (no keys) the same rows would be a seed twice: an error, not a silent mean
    with pytest.raises(ValueError, match="seed 0 twice"):
        seed_table(table, REPLICATES, ["win_rate"])
    one = replicated([0.6], [0.03], seeds=(0,)).assign(run="toy-n8-ipo-betaauto")
    row = seed_table(one, {"toy-n8-ipo-betaauto": {"base_run": "toy-n8-ipo-betaauto", "seed": 0}},
                     ["win_rate"], keys=["step"]).iloc[0]
    assert row["n_seeds"] == 1 and row["mean"] == 0.6 and math.isnan(row["seed_se"])
    assert row["sampling_se"] == pytest.approx(0.03)


def test_a_seed_without_a_value_is_left_out_of_the_mean_and_of_its_seeds():
    """A replicate never read at best-of-n's KL has no value there: the row's mean, SEs, n_seeds and the
    seeds it lists are of the other two (listing all three would claim a mean over seeds it is not)."""
    table = replicated([0.6, float("nan"), 0.8], [0.03, float("nan"), 0.05])
    row = seed_table(table, REPLICATES, ["win_rate"], keys=["step"]).iloc[0]
    assert row["n_seeds"] == 2 and row["seeds"] == "0,2"
    assert row["mean"] == pytest.approx(0.7) and row["seed_se"] == pytest.approx(0.1)
    assert row["sampling_se"] == pytest.approx(math.sqrt(0.03**2 + 0.05**2) / 2)


def test_seed_se_covers_the_grid_points_mean_at_the_nominal_rate():
    """Seeds drawn with training variance tau^2 and sampling variance sigma^2: the mean +- 2 seed_se covers
    the true value as a t interval with S-1 = 9 degrees of freedom does (P(|t_9| <= 2) = 0.923), while the
    sampling SE alone, blind to training variance, covers far less often."""
    rng = np.random.default_rng(0)
    seeds, tau, sigma, truth = 10, 0.04, 0.01, 0.7
    replicates = {f"r-seed{s}": {"base_run": "r", "seed": s} for s in range(seeds)}
    covered = naive = 0
    trials = 400
    for _ in range(trials):
        values = truth + rng.normal(0, tau, seeds) + rng.normal(0, sigma, seeds)
        table = pd.DataFrame({"run": list(replicates), "win_rate": values, "win_rate_se": sigma})
        row = seed_table(table, replicates, ["win_rate"]).iloc[0]
        covered += abs(row["mean"] - truth) <= 2 * row["seed_se"]
        naive += abs(row["mean"] - truth) <= 2 * row["sampling_se"]
    assert 0.88 <= covered / trials <= 0.96  # 0.923 +- 3 SE of 400 trials
    assert naive / trials < 0.5
