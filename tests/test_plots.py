"""Figures: the plotted data read back from the Axes, and the PNG files checked byte by byte."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bonbon.plots import (
    THEORY_LABEL,
    plot_frontier,
    plot_length_distributions,
    plot_reward_distributions,
    plot_training_curves,
    policy_order,
)
from bonbon.theory import beta_star, bon_curve, bon_kl

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from the IHDR chunk; fails unless the file starts like a PNG."""
    head = path.read_bytes()[:24]
    assert head[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
    assert head[12:16] == b"IHDR"
    return struct.unpack(">II", head[16:24])


def by_gid(ax, prefix: str) -> dict[str, object]:
    found = {}
    for artist in ax.get_children():
        gid = artist.get_gid()
        if gid and gid.startswith(prefix):
            assert gid not in found, f"two artists tagged {gid}"
            found[gid[len(prefix):]] = artist
    return found


def make_summary() -> pd.DataFrame:
    nan = float("nan")
    rows = [
        # policy, kind, loss, n, beta, alpha, win_rate, win_rate_se, kl, kl_se, kl_method
        ("reference", "reference", None, pd.NA, nan, nan, 0.5, nan, 0.0, nan, "zero"),
        ("bon-n2", "best_of_n", None, 2, nan, nan, 0.66, 0.02, float(bon_kl(2)), nan, "analytic"),
        ("bon-n8", "best_of_n", None, 8, nan, nan, 0.87, 0.015, float(bon_kl(8)), nan, "analytic"),
        ("toy-n8-bonbon-betaauto-alpha0.005", "trained", "bonbon", 8, beta_star(8), 0.005, 0.81, 0.03, 1.1,
         0.07, "monte_carlo"),
        ("toy-n8-ipo-betaauto", "trained", "ipo", 8, beta_star(8), nan, 0.78, 0.025, 1.4, 0.09,
         "monte_carlo"),
        ("toy-n2-dpo-beta0.1", "trained", "dpo", 2, 0.1, nan, 0.74, 0.02, 2.3, 0.2, "monte_carlo"),
        # a trained policy whose SEs are unknown: no error bars
        ("toy-n2-ipo-betaauto", "trained", "ipo", 2, 0.5, nan, 0.6, nan, 0.2, nan, "monte_carlo"),
    ]
    cols = ["policy", "kind", "loss", "n", "beta", "alpha", "win_rate", "win_rate_se", "kl", "kl_se",
            "kl_method"]
    frame = pd.DataFrame(rows, columns=cols)
    frame["n"] = frame["n"].astype("Int64")
    for col, value in (("mean_reward", 0.0), ("mean_length", 30.0), ("unfinished_share", 0.1),
                       ("n_prompts", 50), ("n_samples", 200)):
        frame[col] = value
    return frame


def panels(fig, x: str = "KL") -> dict[int | None, object]:
    """The frontier figure's panels over ``x`` (KL or length) by their n, read from their titles."""
    found = {}
    for ax in fig.axes:
        title = ax.get_title()
        if f"vs {x}" in title:
            n = int(title.split(":")[0].removeprefix("n = ")) if title.startswith("n = ") else None
            found[n] = ax
    return found


def legend_texts(ax) -> list[str]:
    return [t.get_text() for t in ax.get_legend().get_texts()]


@pytest.fixture(scope="module")
def frontier(tmp_path_factory):
    path = tmp_path_factory.mktemp("plots") / "sub" / "frontier.png"
    summary, theory = make_summary(), bon_curve(16)
    fig = plot_frontier(summary, theory, path)
    return fig, summary, theory, path


def test_frontier_png_written(frontier):
    _, _, _, path = frontier
    width, height = png_size(path)
    # n = 2 and 8: two columns of 6 x 6.5 inch panels (KL, length), 120 dpi
    assert (width, height) == (1440, 1560)
    assert path.stat().st_size > 20_000  # markers, text and a legend, not a blank canvas


def test_frontier_theory_curve(frontier):
    fig, _, theory, _ = frontier
    ax = fig.axes[0]
    line = by_gid(ax, "theory")[""]
    n = theory["n"].to_numpy(float)
    np.testing.assert_allclose(line.get_ydata(), n / (n + 1))
    np.testing.assert_allclose(line.get_xdata(), np.log(n) - (n - 1) / n)
    assert line.get_marker() not in (None, "None", "")  # integer n marked
    assert line.get_label() == THEORY_LABEL
    annotations = {t.get_text() for t in ax.texts}
    assert {"1", "2", "4", "8", "16"} <= annotations  # 16 points: only powers of two are labelled
    assert "3" not in annotations
    assert [t.get_text() for t in ax.get_legend().get_texts()][0] == THEORY_LABEL
    chance = by_gid(ax, "chance")[""]
    np.testing.assert_allclose(chance.get_ydata(), [0.5, 0.5])


def test_frontier_one_panel_per_n_one_point_per_policy_in_place(frontier):
    fig, summary, _, _ = frontier
    kl_panels = panels(fig)
    assert set(kl_panels) == {2, 8} and set(panels(fig, "length")) == {2, 8}
    for n, ax in kl_panels.items():
        points = by_gid(ax, "policy:")
        # the reference in every panel, the rest in the panel of its n
        assert set(points) == {"reference"} | set(summary.loc[summary["n"] == n, "policy"])
        for row in summary[summary["policy"].isin(points)].itertuples():
            offsets = points[row.policy].get_offsets()
            assert offsets.shape == (1, 2)
            np.testing.assert_allclose(offsets[0], [row.kl, row.win_rate])
        # best-of-n's KL at the panel's n
        np.testing.assert_allclose(by_gid(ax, "matched-kl")[""].get_xdata(), [bon_kl(n)] * 2)
        assert ax.get_title() == f"n = {n}: win rate by the proxy reward model (models.reward) vs KL"
        assert "proxy reward model" in ax.get_ylabel()
    points = by_gid(kl_panels[8], "policy:")
    # markers tell the kinds and losses apart, colours the runs of one panel
    marker_paths = {p: points[p].get_paths()[0].vertices.shape for p in points}
    assert marker_paths["toy-n8-ipo-betaauto"] != marker_paths["toy-n8-bonbon-betaauto-alpha0.005"]
    assert marker_paths["bon-n8"] != marker_paths["toy-n8-ipo-betaauto"]
    colour = {p: tuple(points[p].get_facecolor()[0]) for p in points}
    assert colour["toy-n8-ipo-betaauto"] != colour["toy-n8-bonbon-betaauto-alpha0.005"]
    # every point named in the legend below the panel (no label drawn on the data)
    assert {p: points[p].get_label() for p in points} == {
        "reference": "π_ref", "bon-n8": "best-of-8",
        "toy-n8-bonbon-betaauto-alpha0.005": "bonbon n=8 β=0.0275", "toy-n8-ipo-betaauto": "ipo n=8 β=0.0275"}
    assert ({"π_ref", "best-of-8", "bonbon n=8 β=0.0275", "ipo n=8 β=0.0275"}
            <= set(legend_texts(kl_panels[8])))
    assert "dpo n=2 β=0.1" in legend_texts(kl_panels[2])
    assert fig.get_suptitle().endswith("judged by the proxy reward model (models.reward)")


def test_frontier_labels_do_not_overlap(frontier):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig, _, _, _ = frontier
    canvas = FigureCanvasAgg(fig)
    canvas.draw()  # the layout of the saved PNG
    renderer = canvas.get_renderer()
    for ax in fig.axes:
        legend = ax.get_legend().get_window_extent(renderer)
        assert not legend.overlaps(ax.get_window_extent(renderer)), ax.get_title()  # below the data
        boxes = [t.get_window_extent(renderer) for t in ax.get_legend().get_texts()]
        for i, a in enumerate(boxes):
            assert not any(a.overlaps(b) for b in boxes[i + 1:]), ax.get_title()
    titles = [ax.title.get_window_extent(renderer) for ax in fig.axes]
    legends = [ax.get_legend().get_window_extent(renderer) for ax in fig.axes]
    for i, a in enumerate(titles):
        assert not any(a.overlaps(b) for b in legends), i


def test_frontier_error_bars_only_for_finite_se(frontier):
    fig, summary, _, _ = frontier
    xerr, yerr = {}, {}
    for ax in panels(fig).values():
        xerr |= by_gid(ax, "xerr:")
        yerr |= by_gid(ax, "yerr:")
    finite_kl = set(summary.loc[summary["kl_se"].notna(), "policy"])
    finite_wr = set(summary.loc[summary["win_rate_se"].notna(), "policy"])
    assert set(xerr) == finite_kl == {"toy-n8-bonbon-betaauto-alpha0.005", "toy-n8-ipo-betaauto",
                                      "toy-n2-dpo-beta0.1"}
    assert set(yerr) == finite_wr
    assert "bon-n8" in yerr and "bon-n8" not in xerr  # analytic KL: no horizontal bar
    for row in summary.itertuples():
        if row.policy in yerr:
            (segment,) = yerr[row.policy].get_segments()
            np.testing.assert_allclose(segment, [[row.kl, row.win_rate - row.win_rate_se],
                                                 [row.kl, row.win_rate + row.win_rate_se]])
        if row.policy in xerr:
            (segment,) = xerr[row.policy].get_segments()
            np.testing.assert_allclose(segment, [[row.kl - row.kl_se, row.win_rate],
                                                 [row.kl + row.kl_se, row.win_rate]])


def test_frontier_reference_defaults_to_origin_of_the_curve(tmp_path):
    summary = make_summary()
    summary.loc[summary["kind"] == "reference", ["kl", "win_rate"]] = np.nan
    fig = plot_frontier(summary, bon_curve(4), tmp_path / "f.png")
    np.testing.assert_allclose(by_gid(fig.axes[0], "policy:")["reference"].get_offsets()[0], [0.0, 0.5])


def test_frontier_rejects_summary_without_columns(tmp_path):
    with pytest.raises(ValueError, match="win_rate"):
        plot_frontier(make_summary().drop(columns=["win_rate"]), bon_curve(4), tmp_path / "f.png")


def make_eval_tables() -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(0)
    tables = {}
    for name, shift, unfinished in (("toy-n8-bonbon-betaauto-alpha0.005", 1.0, 0.25), ("reference", 0.0, 0.0),
                                    ("bon-n16", 1.5, 0.5), ("bon-n2", 0.5, 0.1)):
        size = 40
        finished = np.arange(size) >= int(unfinished * size)
        tables[name] = pd.DataFrame({
            "reward": rng.normal(shift, 1.0, size),
            "n_tokens": np.where(finished, rng.integers(5, 60, size), 64),
            "finished": finished,
        })
    return tables


def test_policy_order_reference_first_natural_order():
    assert policy_order(["bon-n16", "reference", "bon-n2", "a"], {"reference"}) == [
        "reference", "a", "bon-n2", "bon-n16"]
    assert policy_order(["b", "a"]) == ["a", "b"]
    names = ["toy-n2-ipo", "toy-reference", "hh-reference"]
    assert policy_order(names, {"toy-reference", "hh-reference"}) == ["hh-reference", "toy-reference",
                                                                      "toy-n2-ipo"]
    # a reference is one by kind, not by name: a run tagged "reference" stays among the trained runs
    names = ["toy-n8-dpo-beta0.1-reference", "toy-reference", "toy-bon-n8"]
    assert policy_order(names, {"toy-reference"}) == ["toy-reference", "toy-bon-n8",
                                                      "toy-n8-dpo-beta0.1-reference"]


def test_length_plot_one_box_per_policy(tmp_path):
    tables = make_eval_tables()
    path = tmp_path / "lengths.png"
    fig = plot_length_distributions(tables, path, {"reference"})
    ax = fig.axes[0]
    boxes = by_gid(ax, "box:")
    assert set(boxes) == set(tables)
    labels = [t.get_text() for t in ax.get_yticklabels()]
    ticks = list(ax.get_yticks())
    top_to_bottom = [label for _, label in sorted(zip(ticks, labels, strict=True), reverse=True)]
    assert top_to_bottom == ["reference", "bon-n2", "bon-n16", "toy-n8-bonbon-betaauto-alpha0.005"]
    # each box spans its policy's quartiles of n_tokens
    for name, box in boxes.items():
        xs = box.get_path().vertices[:, 0]
        q1, q3 = np.percentile(tables[name]["n_tokens"], [25, 75])
        assert xs.min() == pytest.approx(q1) and xs.max() == pytest.approx(q3)
    texts = {t.get_text() for t in ax.texts}
    assert {"unfinished 0.0%", "unfinished 10.0%", "unfinished 25.0%", "unfinished 50.0%"} <= texts
    png_size(path)


def test_reward_plot_one_violin_per_policy(tmp_path):
    tables = make_eval_tables()
    tables["constant"] = pd.DataFrame({"reward": [1.0, 1.0], "n_tokens": [3, 3], "finished": [True, True]})
    path = tmp_path / "rewards.png"
    fig = plot_reward_distributions(tables, path, {"reference"})
    assert set(by_gid(fig.axes[0], "violin:")) == set(tables)
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels[np.argmax(fig.axes[0].get_yticks())].startswith("reference")
    w, h = png_size(path)
    assert w == 960 and h > 300


def test_distribution_plots_reject_missing_columns(tmp_path):
    tables = {"reference": pd.DataFrame({"reward": [0.0, 1.0]})}
    with pytest.raises(ValueError, match="n_tokens"):
        plot_length_distributions(tables, tmp_path / "l.png")
    with pytest.raises(ValueError, match="no evaluation tables"):
        plot_reward_distributions({}, tmp_path / "r.png")


def make_metrics(steps: int, seed: int, loss: str) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    step = np.arange(1, steps + 1)
    return pd.DataFrame({
        "step": step, "epoch": 0, "loss": 10.0 / step + rng.uniform(0.01, 0.1, steps),
        "sft": np.nan if loss == "dpo" else rng.uniform(1, 2, steps),
        "ipo": np.nan if loss == "dpo" else rng.uniform(1, 2, steps),
        "chosen_reward": rng.normal(size=steps), "rejected_reward": rng.normal(size=steps),
        "margin": np.linspace(0, 15, steps), "reward_accuracy": rng.uniform(0, 1, steps),
        "grad_norm": rng.uniform(1, 5, steps), "lr": 1e-4, "tokens_per_s": 5000.0,
    })


def test_training_curves(tmp_path):
    runs = {
        "toy-n8-bonbon-betaauto-alpha0.005": {"dataset": "toy", "loss": "bonbon", "n": 8,
                                              "beta": beta_star(8), "beta_auto": True, "alpha": 0.005},
        "toy-n4-ipo-beta0.2": {"dataset": "toy", "loss": "ipo", "n": 4, "beta": 0.2},
        "toy-n2-dpo-beta0.1": {"dataset": "toy", "loss": "dpo", "n": 2, "beta": 0.1},
    }
    metrics = {name: make_metrics(30 + 5 * i, i, info["loss"]) for i, (name, info) in enumerate(runs.items())}
    path = tmp_path / "training.png"
    fig = plot_training_curves(metrics, path, runs=runs)
    loss_ax, margin_ax, acc_ax, grad_ax = fig.axes
    lines = by_gid(loss_ax, "run:")
    assert set(lines) == set(runs)
    for name, line in lines.items():  # raw values at this length (no smoothing)
        np.testing.assert_allclose(line.get_ydata(), metrics[name]["loss"])
        np.testing.assert_allclose(line.get_xdata(), metrics[name]["step"])
    for ax in (margin_ax, acc_ax, grad_ax):
        assert set(by_gid(ax, "run:")) == set(runs)
    targets = by_gid(margin_ax, "target:")
    assert set(targets) == {"toy-n8-bonbon-betaauto-alpha0.005", "toy-n4-ipo-beta0.2"}  # not dpo
    np.testing.assert_allclose(targets["toy-n8-bonbon-betaauto-alpha0.005"].get_ydata(),
                               [1 / (2 * beta_star(8))] * 2)
    np.testing.assert_allclose(targets["toy-n8-bonbon-betaauto-alpha0.005"].get_ydata(), [18.15] * 2,
                               atol=0.01)
    np.testing.assert_allclose(targets["toy-n4-ipo-beta0.2"].get_ydata(), [2.5, 2.5])
    assert targets["toy-n4-ipo-beta0.2"].get_linestyle() == "--"
    assert targets["toy-n4-ipo-beta0.2"].get_color() == lines["toy-n4-ipo-beta0.2"].get_color()
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "bonbon n=8 β=0.0275 α=0.005" in legend and "dpo n=2 β=0.1" in legend
    w, h = png_size(path)
    assert (w, h) == (1320, 900)


def test_training_curves_from_attrs_and_smoothing(tmp_path):
    frame = make_metrics(400, 0, "ipo")
    frame.attrs.update(loss="ipo", n=2, beta=0.5)
    fig = plot_training_curves({"run": frame}, tmp_path / "t.png")
    (target,) = by_gid(fig.axes[1], "target:").values()
    np.testing.assert_allclose(target.get_ydata(), [1.0, 1.0])  # 1 / (2 beta)
    (line,) = by_gid(fig.axes[0], "run:").values()
    window = 4  # 400 steps // 100
    np.testing.assert_allclose(line.get_ydata()[-1], frame["loss"].tail(window).mean())
    assert "rolling mean of 4 steps" in fig.get_suptitle()


def test_training_curves_label_columns_and_clobbered_loss(tmp_path):
    frame = make_metrics(20, 0, "ipo").assign(n=4, beta=0.2)
    fig = plot_training_curves({"run": frame}, tmp_path / "t.png", runs={"run": {"loss": "ipo"}})
    (target,) = by_gid(fig.axes[1], "target:").values()
    np.testing.assert_allclose(target.get_ydata(), [2.5, 2.5])
    with pytest.raises(ValueError, match="not the loss"):
        plot_training_curves({"run": frame.assign(loss="ipo")}, tmp_path / "t.png")


def test_frontier_one_panel_per_dataset(tmp_path):
    toy = make_summary().assign(dataset="toy")
    hh = make_summary().assign(dataset="hh")
    hh["policy"] = "hh-" + hh["policy"]
    hh = hh[hh["kind"] != "trained"]  # hh has only the reference and best-of-n
    path = tmp_path / "f.png"
    fig = plot_frontier(pd.concat([toy, hh], ignore_index=True), bon_curve(4), path)
    assert png_size(path) == (1440, 3120)  # two rows (KL, length) per dataset, a column per n
    hh_ax, _, _, _, toy_ax = fig.axes[:5]  # sorted by dataset name; KL panels then length panels
    assert hh_ax.get_title().endswith("(hh)") and toy_ax.get_title().endswith("(toy)")
    assert set(by_gid(hh_ax, "policy:")) == {"hh-reference", "hh-bon-n2"}
    assert set(by_gid(toy_ax, "policy:")) == set(toy.loc[toy["n"].isna() | (toy["n"] == 2), "policy"])
    for ax in (hh_ax, toy_ax):
        assert set(by_gid(ax, "theory")) == {""}  # the theory curve is the same in every KL panel


def test_frontier_paths_through_checkpoints_and_length_panel(tmp_path):
    summary = make_summary().assign(run=None, step=np.nan)
    run = "toy-n8-ipo-betaauto"
    summary.loc[summary["policy"] == run, ["run", "step", "mean_length"]] = [run, 30, 44.0]
    checkpoints = pd.DataFrame([
        {**summary[summary["policy"] == run].iloc[0].to_dict(), "policy": f"{run}-step{s}", "step": s,
         "kl": kl, "win_rate": wr, "mean_length": length}
        for s, kl, wr, length in ((20, 0.9, 0.74, 38.0), (10, 0.4, 0.65, 33.0))
    ])
    summary.loc[summary["kind"] == "best_of_n", "mean_length"] = [32.0, 36.0]
    fig = plot_frontier(pd.concat([summary, checkpoints], ignore_index=True), bon_curve(8),
                        tmp_path / "f.png")
    kl_ax, length_ax = panels(fig)[8], panels(fig, "length")[8]
    summary = summary[summary["n"].isna() | (summary["n"] == 8)]
    # checkpoints are not final points: small markers on the run's path, which starts at the reference
    assert set(by_gid(kl_ax, "policy:")) == set(summary["policy"])
    assert set(by_gid(kl_ax, "checkpoint:")) == {f"{run}-step10", f"{run}-step20"}
    path = by_gid(kl_ax, "path:")[run]
    np.testing.assert_allclose(path.get_xdata(), [0.0, 0.4, 0.9, 1.4])  # step order, not row order
    np.testing.assert_allclose(path.get_ydata(), [0.5, 0.65, 0.74, 0.78])
    # the length panel: the same path over mean length, best-of-n's measured curve from the reference
    np.testing.assert_allclose(by_gid(length_ax, "path:")[run].get_xdata(), [30.0, 33.0, 38.0, 44.0])
    bon = by_gid(length_ax, "bon-length")[""]
    np.testing.assert_allclose(bon.get_xdata(), [30.0, 32.0, 36.0])
    np.testing.assert_allclose(bon.get_ydata(), [0.5, 0.66, 0.87])
    np.testing.assert_allclose(by_gid(length_ax, "policy:")[run].get_offsets()[0], [44.0, 0.78])
    assert "theory" not in {line.get_gid() for line in length_ax.lines}


def test_training_curves_draw_validation_beside_training(tmp_path):
    frame = pd.DataFrame({"step": range(6), "loss": [4.0, 3.0, 2.5, 2.0, 1.8, 1.5],
                          "margin": [0.0, 1.0, 2.0, 3.0, 4.0, 5.0], "reward_accuracy": 0.5, "grad_norm": 1.0,
                          "val_loss": [None, 3.5, None, 3.0, None, 3.2],
                          "val_margin": [None, 0.5, None, 1.5, None, 2.0]})
    fig = plot_training_curves({"r": frame}, tmp_path / "t.png",
                               runs={"r": {"loss": "ipo", "n": 4, "beta": None}}, smooth=1)
    loss_ax, margin_ax, accuracy_ax, _ = fig.axes
    val = by_gid(loss_ax, "val:")["r"]
    np.testing.assert_allclose(val.get_xdata(), [1, 3, 5])
    np.testing.assert_allclose(val.get_ydata(), [3.5, 3.0, 3.2])
    np.testing.assert_allclose(by_gid(margin_ax, "val:")["r"].get_ydata(), [0.5, 1.5, 2.0])
    assert by_gid(accuracy_ax, "val:") == {}  # no val_reward_accuracy column
    assert by_gid(loss_ax, "run:")["r"].get_color() == val.get_color()


def test_frontier_theory_continues_past_n_max_and_log_scale_far_out(tmp_path):
    summary = make_summary()
    summary.loc[summary["policy"] == "toy-n2-dpo-beta0.1", "kl"] = 20.0  # far past best-of-16's 1.83 nats
    fig = plot_frontier(summary, bon_curve(16), tmp_path / "f.png")
    ax = panels(fig)[2]
    extended = by_gid(ax, "extended-theory")[""]
    kls = extended.get_xdata()
    assert kls[0] == pytest.approx(float(bon_kl(16))) and kls[-1] == pytest.approx(20.0)
    # on the curve: KL(m) = log m - (m-1)/m and win rate m/(m+1); at 20 nats m = e^21 nearly
    m = np.exp(21.0)
    assert extended.get_ydata()[-1] == pytest.approx(m / (m + 1), abs=1e-6)
    assert ax.get_xscale() == "symlog"
    assert make_summary()["kl"].max() < 5  # the fixture itself keeps a linear axis
    assert panels(plot_frontier(make_summary(), bon_curve(16),
                                tmp_path / "g.png"))[2].get_xscale() == "linear"
    assert panels(fig)[8].get_xscale() == "linear"  # only the panel with the far point


def test_frontier_labels_lora_runs_beside_full_weight_ones(tmp_path):
    summary = make_summary()
    lora = summary[summary["policy"] == "toy-n8-ipo-betaauto"].assign(policy="toy-n8-ipo-betaauto-lora",
                                                                      win_rate=0.7)
    fig = plot_frontier(pd.concat([summary, lora], ignore_index=True), bon_curve(16), tmp_path / "f.png")
    texts = legend_texts(panels(fig)[8])
    # one LoRA label; the full-weight ipo and bonbon runs (one alpha: not shown) keep theirs
    assert texts.count("ipo n=8 β=0.0275 LoRA") == 1 and texts.count("ipo n=8 β=0.0275") == 1
    assert texts.count("bonbon n=8 β=0.0275") == 1
