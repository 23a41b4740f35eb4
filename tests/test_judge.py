"""The judge (models.judge): a model apart from the training reward that scores evaluation samples."""

import math

import pandas as pd
import pytest
import torch

from bonbon import toy
from bonbon.config import ConfigError, check_config, hub_ids, model_role
from bonbon.evaluate import (
    add_judge_wins,
    pair_with_opponents,
    summarize,
    summarize_judge,
    summary_table,
)
from bonbon.frontier import (
    add_frontier_columns,
    add_judge_frontier_columns,
    judge_run_table,
    judge_view,
)
from bonbon.generate import judge_samples
from bonbon.models import load_reward_model
from bonbon.plots import plot_judge_vs_proxy
from bonbon.tables import FRONTIER_COLUMNS, JUDGE_SUMMARY_COLUMNS, SUMMARY_COLUMNS


def test_judge_model_defaults_to_the_reward_model():
    # the models key a role reads (bonbon.model_refs turns it into TOY_MODELS' directory or the setting)
    assert model_role({"models": {"reward": "toy", "judge": None}}, "judge") == "reward"
    assert model_role({"models": {"reward": "org/rm"}}, "judge") == "reward"
    assert model_role({"models": {"reward": "toy", "judge": "toy"}}, "judge") == "judge"
    assert model_role({"models": {"reward": "toy", "judge": "org/judge"}}, "judge") == "judge"
    assert model_role({"models": {"reward": "toy", "judge": None}}, "reward") == "reward"


def test_judge_is_checked_like_the_other_models(tmp_path):
    from helpers.configs import filled

    with pytest.raises(ConfigError, match=r"models.judge: model directory '\./no/judge' does not exist"):
        check_config(filled(models={"base": "toy", "reward": "toy", "judge": "./no/judge"}))
    config = filled(models={"base": "toy", "reward": "toy", "judge": "Skywork/judge-rm"})
    check_config(config)
    assert ("models.judge", "Skywork/judge-rm", "model") in hub_ids(config)
    assert [key for key, _, _ in hub_ids(filled(models={"base": "toy", "reward": "toy",
                                                        "judge": None}))] == []


def test_judge_corpus_is_its_own_draw():
    judge, proxy = toy.make_judge_corpus(50, seed=0), toy.make_corpus(50, seed=0)
    assert toy.judge_seed(0) == 104729
    pd.testing.assert_frame_equal(judge, toy.make_corpus(50, seed=104729))
    assert not judge["prompt"].str.cat(judge["response"]).equals(proxy["prompt"].str.cat(proxy["response"]))
    pd.testing.assert_frame_equal(judge, toy.make_judge_corpus(50, seed=0))  # deterministic


SAMPLES = pd.DataFrame({
    "prompt": ["\n\nHuman: How do I bake my bread?\n\nAssistant:", "\n\nHuman: Fix my bike?\n\nAssistant:"],
    "response": [" First, check the bread every 3 days.", " Just look it up yourself."],
    "reward": [0.25, -1.5],
})


def test_judge_scores_equal_a_direct_forward_of_the_judge(toy_models):
    torch.set_num_threads(2)
    judge_path = str(toy_models["reward"])  # any one-logit model will do as the judge
    scored, counts = judge_samples(SAMPLES, judge_path, "some/other-reward", batch_size=1)
    model, tokenizer = load_reward_model(judge_path)
    with torch.inference_mode():
        direct = [model(**tokenizer(p, r, return_tensors="pt")).logits[0, 0].item()
                  for p, r in zip(SAMPLES["prompt"], SAMPLES["response"], strict=True)]
    assert scored["judge_reward"].tolist() == pytest.approx(direct, abs=1e-5)
    assert scored["reward"].tolist() == [0.25, -1.5]  # the proxy's column is left alone
    assert counts == {"judge_prompt_cut": 0, "judge_prompt_and_response_cut": 0}


def test_judge_that_is_the_reward_model_copies_the_reward():
    scored, counts = judge_samples(SAMPLES, "org/rm", "org/rm")  # nothing is loaded: org/rm does not exist
    assert scored["judge_reward"].tolist() == [0.25, -1.5] and counts == {"judge_is_reward_model": 1}


def table(rewards: dict[str, list[tuple[float, float]]]) -> pd.DataFrame:
    """(proxy reward, judge reward) per sample of each prompt."""
    return pd.DataFrame([
        {"prompt_id": pid, "sample_idx": j, "reward": r, "judge_reward": jr, "n_tokens": 3, "finished": True}
        for pid, values in rewards.items() for j, (r, jr) in enumerate(values)
    ])


def test_judge_wins_and_win_rate_by_hand():
    reference = table({"a": [(1.0, 0.0), (2.0, 1.0)], "b": [(0.5, 3.0), (0.5, 0.0)]})
    policy = table({"a": [(1.5, -1.0), (2.0, 1.0)], "b": [(0.5, 4.0), (0.1, 0.0)]})
    evaluated = add_judge_wins(pair_with_opponents(policy, reference, 2, 2, "p"), reference, 2, "p")
    evaluated = evaluated.sort_values(["prompt_id", "sample_idx"])
    # each sample against both opponents of its prompt (the estimator of issue 21; it was sample j
    # against opponent j only: proxy 1, ½, ½, 0 and judge 0, ½, 1, ½)
    assert evaluated["win"].tolist() == [0.5, 0.75, 0.5, 0.0]          # the proxy's verdicts
    # the judge's: -1 vs {0, 1}, 1 vs {0, 1}, ...
    assert evaluated["judge_win"].tolist() == [0.0, 0.75, 1.0, 0.25]
    row = summarize_judge(evaluated)
    # prompt means 0.375 (a) and 0.625 (b): rate 0.5, clustered SE = sd(0.375, 0.625) / sqrt(2) = 0.125
    assert row["judge_win_rate"] == pytest.approx(0.5)
    assert row["judge_win_rate_se"] == pytest.approx(0.125)
    assert (row["judge_win_rate_ci_low"], row["judge_win_rate_ci_high"]) == pytest.approx((0.375, 0.625))
    assert row["mean_judge_reward"] == pytest.approx((-1.0 + 1.0 + 4.0 + 0.0) / 4)
    with pytest.raises(ValueError, match=r"p: prompt 'c' has an opponent without judge_reward"):
        add_judge_wins(pair_with_opponents(table({"c": [(1.0, 1.0)]}), table({"c": [(1.0, math.nan)]}), 1, 1,
                                           "p"),
                       table({"c": [(1.0, math.nan)]}), 1, "p")


def summary_rows(judged: bool) -> list[dict]:
    rows = []
    for name, kind, n, loss, rewards in [
        ("ref", "reference", None, None, {"a": [(1.0, 1.0), (0.0, 0.0)], "b": [(1.0, 1.0), (0.0, 0.0)]}),
        ("bon-n2", "best_of_n", 2, None, {"a": [(2.0, 0.0), (1.0, 1.0)], "b": [(2.0, 2.0), (1.0, 0.0)]}),
        ("run", "trained", 2, "bonbon", {"a": [(2.0, 2.0), (1.0, 1.0)], "b": [(2.0, 0.0), (1.0, 1.0)]}),
    ]:
        reference = table({"a": [(1.0, 1.0), (0.0, 0.0)], "b": [(1.0, 1.0), (0.0, 0.0)]})
        t = pair_with_opponents(table(rewards), reference, 2, 2, name)
        t = add_judge_wins(t, reference, 2, name).assign(policy_logp=-1.0, reference_logp=-1.5)
        row = summarize(t, name, kind, dataset="d", n=n, loss=loss, beta=0.1 if loss else None,
                        sampling={"temperature": 1.0, "top_k": 0, "top_p": 1.0}, run=name if loss else None,
                        step=10 if loss else None)
        rows.append({**row, **summarize_judge(t)} if judged else row)
    return rows


def test_summary_gets_judge_columns_and_keeps_the_proxy_columns():
    plain = add_frontier_columns(summary_table(summary_rows(judged=False)))
    judged = add_judge_frontier_columns(add_frontier_columns(summary_table(summary_rows(judged=True))))
    assert list(plain.columns) == [*SUMMARY_COLUMNS, *FRONTIER_COLUMNS]
    pd.testing.assert_frame_equal(judged[plain.columns], plain)  # the proxy's columns, bit for bit
    assert list(judged.columns)[len(plain.columns):] == [
        *JUDGE_SUMMARY_COLUMNS, "judge_frontier_gap", "judge_frontier_gap_se", "judge_empirical_frontier_gap",
        "judge_empirical_frontier_gap_se"]
    by = judged.set_index("policy")
    # every sample against both opponents {1, 0} of its prompt (issue 21; it was sample j against opponent j
    # only: bon-n2 1.0 and 0.625, run 0.75 by the judge)
    # proxy: bon-n2 wins 1, ¾, 1, ¾ -> 0.875; judge: 0 vs {1, 0} (¼), 1 (¾), 2 (1), 0 (¼) -> 0.5625
    assert (by.loc["bon-n2", "win_rate"] == 0.875
            and by.loc["bon-n2", "judge_win_rate"] == pytest.approx(0.5625))
    # run: proxy 0.875; judge 2, 1, 0, 1 vs {1, 0} -> 1, ¾, ¼, ¾ -> 0.6875, at KL 0.5
    assert (by.loc["run", "judge_win_rate"] == pytest.approx(0.6875)
            and by.loc["run", "kl"] == pytest.approx(0.5))
    # theory at KL 0.5 is m/(m+1) with log m - (m-1)/m = 0.5 (m = 2.6937...)
    theory = 0.875 - by.loc["run", "frontier_gap"]
    assert by.loc["run", "judge_frontier_gap"] == pytest.approx(0.6875 - theory)
    # the reference's samples (here equal to the opponents) against the opponents: ½ (1 vs {1, 0}, 0 vs
    # {1, 0})
    assert by.loc["ref", "judge_frontier_gap"] == pytest.approx(0.0)
    runs = judge_run_table(judged)
    assert (runs["run"].tolist() == ["run"]
            and runs["judge_final_win_rate"].tolist() == pytest.approx([0.6875]))
    view = judge_view(judged)
    assert view["win_rate"].tolist() == judged["judge_win_rate"].tolist()
    assert view["frontier_gap"].tolist() == judged["judge_frontier_gap"].tolist()
    assert judge_view(plain) is plain


def test_judge_vs_proxy_figure(tmp_path):
    summary = add_judge_frontier_columns(add_frontier_columns(summary_table(summary_rows(judged=True))))
    theory = pd.DataFrame({"n": [1, 2], "win_rate": [0.5, 2 / 3], "kl": [0.0, math.log(2) - 0.5]})
    fig = plot_judge_vs_proxy(summary, theory, tmp_path / "judge.png")
    assert (tmp_path / "judge.png").stat().st_size > 0
    ax = fig.axes[0]
    points = {c.get_gid(): tuple(c.get_offsets()[0]) for c in ax.collections if c.get_gid()}
    assert (points["proxy:run"] == pytest.approx((0.5, 0.875))
            and points["judge:run"] == pytest.approx((0.5, 0.6875)))
    assert points["judge:bon-n2"] == pytest.approx((math.log(2) - 0.5, 0.5625))
    assert (points["proxy:ref"] == pytest.approx((0.0, 0.5))
            and points["judge:ref"] == pytest.approx((0.0, 0.5)))
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['judge_win_rate'\]"):
        plot_judge_vs_proxy(summary.drop(columns="judge_win_rate"), theory, tmp_path / "x.png")
