"""Every figure of a small workflow run against the tables it claims to draw.

Each plot rule writes, beside its PNG, what every tagged artist draws (bonbon.plots.write_series: gid,
label, data coordinates). Here a run with several alignment runs in a config order that is not their
sorted order (the order params and inputs disagreed on, which once labelled every training curve with
another run) is checked series by series: each drawn series carries exactly the values of the table
row of the policy or run its gid and its label name. The checks are shown to fail on a figure drawn
with the old pairing by position.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import run_workflow
from helpers.configs import SMALL

# config order ipo n4, bonbon n2, dpo n4; sorted by name: toy-n2-bonbon..., toy-n4-dpo..., toy-n4-ipo...
RUNS = [
    {"loss": "ipo", "n": [4], "beta": ["auto"], "checkpoints": {"steps": [2]}},
    {"loss": "bonbon", "n": [2], "beta": ["auto"], "alpha": [0.005]},
    {"loss": "dpo", "n": [4], "beta": [0.1], "training": {"learning_rate": 3e-4}},
]
FIGURES = ("frontier", "judge_vs_proxy", "training", "rewards", "lengths")
NAMES = ["toy-n4-ipo-betaauto", "toy-n2-bonbon-betaauto-alpha0.005", "toy-n4-dpo-beta0.1"]


@pytest.fixture(scope="module")
def figures_run(tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("figures")
    config = copy.deepcopy(SMALL)
    config.update(n_values=[2, 4], runs=RUNS, models={"base": "toy", "reward": "toy", "judge": "toy"})
    config["toy"].update(n_dialogues=600, n_prompts=96, base_model={"steps": 60, "batch_size": 16},
                         reward_model={"steps": 30, "batch_size": 32},
                         judge_model={"n_dialogues": 300, "steps": 30, "batch_size": 32})
    config["generation"]["max_new_tokens"] = 24
    config["sft"]["training"]["max_steps"] = 4
    config["training"].update(max_steps=6, snapshot_every=2, checkpoint_every=100)
    config["evaluation"] = {"checkpoints": {}}
    # the figures and what they draw from, not the rest of the DAG (the exact world)
    run_workflow(workdir, config, *(f"results/plots/{f}.json" for f in FIGURES))
    return workdir


def series(root: Path, figure: str) -> list[dict]:
    return json.loads((root / "results" / "plots" / f"{figure}.json").read_text())


def tables(root: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    summary = pd.read_parquet(root / "results/eval/summary.parquet").set_index("policy")
    runs = pd.read_parquet(root / "results/eval/runs.parquet").set_index("run")
    return summary, runs


def expected_label(row: pd.Series, alphas: int) -> str:
    """The label a table row must be drawn with, spelt out from its loss, n, beta and alpha."""
    if row["kind"] == "reference":
        return "π_ref"
    if row["kind"] == "best_of_n":
        return f"best-of-{int(row['n'])}"
    label = f"{row['loss']} n={int(row['n'])} β={float(row['beta']):.3g}"
    return label + (f" α={float(row['alpha']):g}" if row["loss"] == "bonbon" and alphas > 1 else "")


def frontier_problems(drawn: list[dict], summary: pd.DataFrame, win: str) -> list[str]:
    """Every frontier point or path whose values or label are not its summary row's."""
    problems = []
    alphas = summary.loc[summary["loss"] == "bonbon", "alpha"].nunique()
    for s in drawn:
        kind, _, name = s["gid"].partition(":")
        x = "kl" if "vs KL" in s["title"] else "mean_length"
        if kind == "policy":
            row = summary.loc[name]
            want = [0.0 if row["kind"] == "reference" and x == "kl" else row[x], row[win]]
            if not np.allclose(s["offsets"][0], want):
                problems.append(f"{s['gid']} ({s['title']}): drawn at {s['offsets'][0]}, its row says {want}")
            if s["label"] != expected_label(row, alphas):
                problems.append(f"{s['gid']}: labelled {s['label']!r}, "
                                f"its row is {expected_label(row, alphas)!r}")
            if row["kind"] != "reference" and not s["title"].startswith(f"n = {int(row['n'])}:"):
                problems.append(f"{s['gid']} drawn in the panel {s['title']!r}")
        elif kind == "path":
            points = summary[summary["run"] == name].sort_values("step")
            ref = summary[summary["kind"] == "reference"].iloc[0]
            want_x = [0.0 if x == "kl" else ref[x], *points[x]]
            if not (np.allclose(s["x"], want_x) and np.allclose(s["y"], [ref[win], *points[win]])):
                problems.append(f"{s['gid']}: drawn x {s['x']}, y {s['y']}; its rows say x {want_x}")
    return problems


def training_problems(drawn: list[dict], runs: pd.DataFrame, root: Path) -> list[str]:
    """Every training curve whose values are not its run's metrics.csv or whose label is not its run's."""
    problems = []
    for s in drawn:
        kind, _, run = s["gid"].partition(":")
        if kind not in ("run", "target"):
            continue
        row = runs.loc[run]
        if kind == "target":  # the margin 1/(2 beta) of the run named
            if not np.allclose(s["y"], 1 / (2 * row["beta"])):
                problems.append(f"{s['gid']}: target {s['y'][0]}, its beta {row['beta']} "
                                f"gives {1 / (2 * row['beta'])}")
            continue
        metrics = pd.read_csv(root / "results" / "models" / run / "metrics.csv")
        column = {0: "loss", 1: "margin", 2: "reward_accuracy", 3: "grad_norm"}[s["axes"]]
        if not (np.allclose(s["x"], metrics["step"])
                and np.allclose(s["y"], metrics[column], equal_nan=True)):
            problems.append(f"{s['gid']} {column}: not the values of {run}'s metrics.csv")
        want = f"{row['loss']} n={int(row['n'])} β={float(row['beta']):.3g}"
        if not s["label"].startswith(want):
            problems.append(f"{s['gid']}: labelled {s['label']!r}, its run is {want!r}")
    return problems


def test_every_figure_draws_the_rows_its_labels_name(figures_run):
    summary, runs = tables(figures_run)
    assert set(runs.index) == set(NAMES) and list(NAMES) != sorted(NAMES)
    # the frontier: the judge's win rates (a separate toy judge), and the axes say so
    drawn = series(figures_run, "frontier")
    points = {s["gid"] for s in drawn if s["gid"].startswith("policy:")}
    finals = set(summary.index[summary["run"].isna() | (summary.index == summary["run"])])
    # + reference, bon n2, n4
    assert {p.removeprefix("policy:") for p in points} == finals and len(finals) == 3 + 3
    assert {s["gid"] for s in drawn if s["gid"].startswith("path:")} == {"path:toy-n4-ipo-betaauto"}
    assert all("judge (models.judge)" in s["title"] for s in drawn)
    assert frontier_problems(drawn, summary, "judge_win_rate") == []
    # proxy against judge: each final policy at its KL, once per judge
    judged = series(figures_run, "judge_vs_proxy")
    for s in judged:
        kind, _, name = s["gid"].partition(":")
        if kind in ("proxy", "judge"):
            row = summary.loc[name]
            kl = 0.0 if row["kind"] == "reference" else row["kl"]
            assert np.allclose(s["offsets"][0],
                               [kl, row["win_rate" if kind == "proxy" else "judge_win_rate"]]), s
    assert {s["gid"] for s in judged if s["gid"].startswith("judge:")} == {f"judge:{p}" for p in finals}
    # training: one curve per run on every panel, each its own run's metrics, labelled with its own loss and n
    trained = series(figures_run, "training")
    assert ({s["gid"] for s in trained if s["axes"] == 0 and s["gid"].startswith("run:")}
            == {f"run:{r}" for r in NAMES})
    assert training_problems(trained, runs, figures_run) == []
    # distributions: each final policy's mean reward and length (and median length) are its summary row's
    # (checkpoints are drawn on the frontier's paths, not here: the rule reads POLICIES, the final ones)
    for figure, column in (("rewards", "mean_reward"), ("lengths", "mean_length")):
        means = {s["gid"].removeprefix("mean:"): s for s in series(figures_run, figure)
                 if s["gid"].startswith("mean:")}
        assert set(means) == finals
        for name, s in means.items():
            x = s["offsets"][0][0] if s["kind"] == "points" else s["x"][0]
            assert x == pytest.approx(summary.loc[name, column]), (figure, name)
    for s in series(figures_run, "lengths"):
        if s["gid"].startswith("median:"):
            assert s["x"][0] == pytest.approx(summary.loc[s["gid"].removeprefix("median:"), "median_length"])


def test_the_checks_fail_on_a_figure_paired_by_position(figures_run, tmp_path):
    """The old plot_training.py: metrics zipped by position with the sorted run names."""
    from bonbon.plots import drawn_series, plot_training_curves
    from bonbon.rerun import canonical

    summary, runs = tables(figures_run)
    specs = canonical({r: {"loss": runs.loc[r, "loss"], "n": int(runs.loc[r, "n"]),
                           "beta": float(runs.loc[r, "beta"]), "alpha": float(runs.loc[r, "alpha"])}
                       for r in NAMES})
    # the inputs: config order
    paths = [figures_run / "results" / "models" / r / "metrics.csv" for r in NAMES]
    permuted = {run: pd.read_csv(path) for run, path in zip(specs, paths, strict=True)}
    problems = training_problems(drawn_series(plot_training_curves(permuted, tmp_path / "t.png", runs=specs)),
                                 runs, figures_run)
    # every run's loss curve is another run's (its label, from its own spec, is its own)
    assert {p.split()[0] for p in problems if " loss: " in p} == {f"run:{r}" for r in NAMES}, problems
    # and a frontier whose points are swapped between two runs' rows
    drawn = series(figures_run, "frontier")
    swap = {"policy:toy-n4-ipo-betaauto": "policy:toy-n4-dpo-beta0.1",
            "policy:toy-n4-dpo-beta0.1": "policy:toy-n4-ipo-betaauto"}
    swapped = [{**s, "gid": swap.get(s["gid"], s["gid"])} for s in drawn]
    assert len(frontier_problems(swapped, summary, "judge_win_rate")) >= 4  # values and labels, KL and length
    assert not math.isnan(summary.loc["toy-n4-ipo-betaauto", "judge_win_rate"])
