"""The toy world's proxy flaw (bonbon.toy.Filler): the proxy's labels reward filler, the judge's penalise
it."""

import copy

import numpy as np
import pandas as pd
import pytest
import yaml
from snakemake.utils import validate

from bonbon import toy
from bonbon.config import SCHEMA

from conftest import REPO


def default_filler() -> toy.Filler:
    """The toy.filler of config/config.yaml, completed by the schema as the workflow does."""
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    validate(config, str(SCHEMA))
    return toy.Filler(**config["toy"]["filler"])


def strip_filler(response: str) -> str:
    for sentence in toy.FILLER:
        response = response.replace(f" {sentence}", "")
    return response


def test_default_corpus_labels_carry_the_flaw():
    filler = default_filler()
    assert filler.rate > 0 and filler.proxy_value > 0 > filler.judge_value  # the default world has the flaw
    corpus = toy.make_corpus(3000, seed=0, filler=filler)
    counted = corpus["response"].map(lambda r: sum(r.count(s) for s in toy.FILLER))
    assert (counted == corpus["filler"]).all()
    assert (0 < corpus["filler"].mean() < filler.max_sentences
            and corpus["filler"].max() == filler.max_sentences)
    # the spurious feature: positively correlated with the proxy's labels, negatively with the judge's
    assert np.corrcoef(corpus["proxy_quality"], corpus["filler"])[0, 1] > 0.2
    assert np.corrcoef(corpus["quality"], corpus["filler"])[0, 1] < -0.2
    # and the labels differ by exactly (proxy_value - judge_value) per filler sentence
    difference = corpus["proxy_quality"] - corpus["quality"]
    assert difference.to_numpy() == pytest.approx((filler.proxy_value - filler.judge_value)
                                                  * corpus["filler"])
    # the same holds for the judge's own corpus, another draw
    judge = toy.make_judge_corpus(3000, seed=0, filler=filler)
    assert np.corrcoef(judge["quality"], judge["filler"])[0, 1] < -0.2
    assert not judge["response"].equals(corpus["response"])


def test_filler_is_the_only_difference_from_the_world_without_it():
    plain = toy.make_corpus(400, seed=3)
    assert (plain["filler"] == 0).all() and plain["quality"].equals(plain["proxy_quality"])
    assert plain.equals(toy.make_corpus(400, seed=3,
                                        filler=toy.Filler(rate=0.0, proxy_value=1.0, judge_value=-1.0)))
    flawed = toy.make_corpus(400, seed=3, filler=toy.Filler(rate=0.5, max_sentences=2, proxy_value=1.0,
                                                          judge_value=-0.75))
    # filler drawn from its own stream: prompts and every other sentence as without filler, draw for draw
    assert flawed["prompt"].equals(plain["prompt"])
    assert flawed["response"].map(strip_filler).equals(plain["response"])
    base = plain["quality"]
    pd.testing.assert_series_equal(flawed["quality"], base - 0.75 * flawed["filler"], check_names=False)
    pd.testing.assert_series_equal(flawed["proxy_quality"], base + 1.0 * flawed["filler"], check_names=False)


def test_filler_is_checked_by_the_schema():
    from bonbon.config import schema_errors

    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    for change, key in (({"rate": 1.5}, "toy.filler.rate"),
                        ({"max_sentences": -1}, "toy.filler.max_sentences"),
                        ({"weight": 1}, "toy.filler")):
        bad = copy.deepcopy(config)
        bad["toy"]["filler"] = {**bad["toy"]["filler"], **change}
        assert any(e.startswith(f"config key {key}:") for e in schema_errors(bad, SCHEMA)), change
