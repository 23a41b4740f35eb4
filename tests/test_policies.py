"""bonbon.policies: the catalog of policies a config evaluates, without Snakemake."""

import re

import pytest

from bonbon.policies import Kind, block_names, catalog

RUNS = {
    "toy-n8-bonbon-betaauto-alpha0.005": {"dataset": "toy", "n": 8, "loss": "bonbon", "beta": 0.0551,
                                          "alpha": 0.005},
    "toy-n2-dpo-beta0.1": {"dataset": "toy", "n": 2, "loss": "dpo", "beta": 0.1, "alpha": None},
}


@pytest.fixture
def policies():
    return catalog(["toy"], [8, 2], 16, RUNS)


def test_blocks_double():
    assert block_names(8) == ["0-2", "2-4", "4-8"]
    assert block_names(5) == ["0-2", "2-4", "4-8"]
    assert block_names(16) == ["0-2", "2-4", "4-8", "8-16"]


def test_catalog_names_and_kinds(policies):
    assert {name: p.kind for name, p in policies.finals.items()} == {
        "toy-reference": Kind.REFERENCE,
        "toy-bon-n2": Kind.BEST_OF_N,
        "toy-bon-n8": Kind.BEST_OF_N,
        "toy-n8-bonbon-betaauto-alpha0.005": Kind.TRAINED,
        "toy-n2-dpo-beta0.1": Kind.TRAINED,
    }
    assert list(policies.candidates) == ["toy-bon-candidates0-2", "toy-bon-candidates2-4",
                                         "toy-bon-candidates4-8"]
    assert list(policies.opponents) == ["toy-opponents0-2", "toy-opponents2-4", "toy-opponents4-8",
                                        "toy-opponents8-16"]
    # best-of-n has no samples of its own: it is built from the candidates'
    assert "toy-bon-n8" not in {p.name for p in policies.sampled()}
    assert len(policies.sampled()) == 3 + 3 + 4


def test_sample_ranges_are_disjoint_streams(policies):
    k = 2
    reference = policies["toy-reference"]
    assert reference.sample_range(k) == (0, 2)
    # best-of-n positions [a, b) are the reference's samples k + a*k ... k + b*k - 1: after its own k
    assert [policies[c].sample_range(k) for c in policies.candidates] == [(2, 6), (6, 10), (10, 18)]
    assert {policies[c].stream for c in policies.candidates} == {"toy-reference"}
    # the opponents are samples 0 ... M-1 of a stream of their own, so they share no draw with the above
    assert [policies[o].sample_range(k) for o in policies.opponents] == [(0, 2), (2, 4), (4, 8), (8, 16)]
    assert {policies[o].stream for o in policies.opponents} == {"toy-opponents"}
    assert policies["toy-n2-dpo-beta0.1"].stream == "toy-n2-dpo-beta0.1"
    assert [p.samples_from_reference for p in policies.sampled()] == [True, False, False] + [True] * 7


def test_checkpoints_by_name(policies):
    snapshot = policies["toy-n2-dpo-beta0.1-step12"]
    assert (snapshot.kind, snapshot.run, snapshot.step, snapshot.snapshot) == (
        Kind.TRAINED, "toy-n2-dpo-beta0.1", 12, True)
    assert snapshot.model_dir == "results/models/toy-n2-dpo-beta0.1/snapshots/step-000012"
    assert snapshot.sample_files() == ["results/samples/toy-n2-dpo-beta0.1-step12.parquet"]
    assert not snapshot.is_final
    final = policies["toy-n2-dpo-beta0.1"].at_step(40)
    assert (final.model_dir, final.snapshot, final.is_final) == ("results/models/toy-n2-dpo-beta0.1",
                                                                 False, True)
    with pytest.raises(KeyError, match="toy-n4-ipo-step3"):
        policies["toy-n4-ipo-step3"]  # not a run of the config
    with pytest.raises(KeyError, match="toy-bon-n4"):
        policies["toy-bon-n4"]


def test_best_of_n_reads_the_blocks_of_its_n_candidates(policies):
    assert policies["toy-bon-n2"].sample_files() == ["results/samples/toy-bon-candidates0-2.parquet"]
    assert policies["toy-bon-n8"].sample_files() == [f"results/samples/toy-bon-candidates{b}.parquet"
                                                     for b in ("0-2", "2-4", "4-8")]
    assert policies["toy-reference"].model_dir is None  # the reference model is the workflow's (SFT or base)


def test_spec_is_the_plain_mapping_the_scripts_read(policies):
    # params compare by repr: a spec holds plain values only, and the same keys as the scripts read
    assert policies["toy-reference"].spec() == {"dataset": "toy", "kind": "reference"}
    assert repr(policies["toy-reference"].spec()["kind"]) == "'reference'"
    assert policies["toy-bon-n8"].spec() == {"dataset": "toy", "kind": "best_of_n", "n": 8}
    assert policies["toy-bon-candidates2-4"].spec() == {"dataset": "toy", "kind": "candidates",
                                                        "positions": (2, 4)}
    assert policies["toy-opponents8-16"].spec() == {"dataset": "toy", "kind": "opponents", "samples": (8, 16)}
    dpo = {"dataset": "toy", "kind": "trained", "n": 2, "loss": "dpo", "beta": 0.1, "alpha": None}
    assert policies["toy-n2-dpo-beta0.1"].spec() == dpo
    assert policies["toy-n2-dpo-beta0.1"].at_step(40).spec() == {**dpo, "run": "toy-n2-dpo-beta0.1",
                                                                 "step": 40}
    assert policies["toy-n2-dpo-beta0.1-step7"].spec() == {**dpo, "run": "toy-n2-dpo-beta0.1", "step": 7}


def test_name_pattern_matches_exactly_the_policies(policies):
    pattern = re.compile(f"^(?:{policies.name_pattern()})$")
    names = [*policies.finals, *policies.candidates, *policies.opponents, "toy-n2-dpo-beta0.1-step5"]
    assert all(pattern.match(name) for name in names)
    for other in ("toy-bon-n4", "toy-opponents16-32", "toy-n4-ipo-step3", "toy-n2-dpo-beta0.1-stepx", "toy"):
        assert not pattern.match(other), other
