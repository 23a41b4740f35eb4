"""Figures of the evaluation and training stages: one PNG per function, no global pyplot state.

Every function builds a :class:`matplotlib.figure.Figure` directly (rendered by Agg on save, so no
display and no backend switch is needed), writes it to ``path`` and returns it, so tests can read the
plotted data back from the Axes. Artists that carry data are tagged with a ``gid``:

- frontier: ``"theory"`` (the best-of-n curve), ``"chance"`` (win rate 1/2),
  ``"policy:{name}"`` (one scatter point per summary row), ``"xerr:{name}"`` / ``"yerr:{name}"``
  (the error bars, where the standard error is finite), each point labelled (:func:`frontier_label`);
- frontier, per n panel also: ``"path:{run}"`` (a run's path from the reference through its checkpoints),
  ``"checkpoint:{policy}"`` (its checkpoints), ``"matched-kl"`` (best-of-n's KL at the panel's n);
- lengths: ``"box:{name}"`` (one box per policy), ``"mean:{name}"`` and ``"median:{name}"``;
- rewards: ``"violin:{name}"`` (one violin per policy), ``"mean:{name}"`` (its mean reward);
- training: ``"run:{run}"`` (one line per run on every panel), ``"target:{run}"`` (1/(2 beta) on the
  margin panel, ipo and bonbon runs only).

:func:`write_series` writes what those artists draw beside the PNG, so the figure can be checked
against the table rows its labels name (tests/test_figures.py).
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from bonbon.frontier import theory_win_rate_at_kl
from bonbon.runs import is_lora_run
from bonbon.theory import bon_kl

__all__ = [
    "LOSS_MARKERS",
    "JUDGE_LABEL",
    "JUDGE_WHO",
    "PROXY_LABEL",
    "PROXY_WHO",
    "plot_frontier",
    "plot_judge_vs_proxy",
    "plot_length_distributions",
    "plot_reward_distributions",
    "plot_training_curves",
    "drawn_series",
    "frontier_label",
    "policy_order",
    "target_beta",
    "write_series",
]

DPI = 120
LOSS_MARKERS = {"bonbon": "o", "ipo": "s", "dpo": "^"}
BEST_OF_N_MARKER = "*"
REFERENCE_MARKER = "D"
THEORY_LABEL = "best-of-n theory n/(n+1) vs log n − (n−1)/n"
_OTHER_MARKER = "P"  # a trained policy with an unknown loss


def drawn_series(fig: Figure) -> list[dict[str, Any]]:
    """What every tagged artist of ``fig`` draws, in data coordinates: one dict per artist with a
    ``gid``, its axes (``axes``: index, ``title``), ``label`` and ``kind``, and its data: ``x``/``y``
    (lines), ``offsets`` (scatter points), ``segments`` (error bars), ``vertices`` (patches, violins).
    Written beside each figure (:func:`write_series`) so a test can check the figure against its tables."""
    from matplotlib.collections import LineCollection, PathCollection, PolyCollection
    from matplotlib.patches import Patch

    out = []
    for i, ax in enumerate(fig.axes):
        for artist in ax.get_children():
            gid = artist.get_gid()
            if not gid:
                continue
            entry: dict[str, Any] = {"gid": gid, "axes": i, "title": ax.get_title(),
                                     "label": artist.get_label()}
            if isinstance(artist, Line2D):
                entry.update(kind="line", x=np.asarray(artist.get_xdata(), float).tolist(),
                             y=np.asarray(artist.get_ydata(), float).tolist())
            elif isinstance(artist, PathCollection):
                entry.update(kind="points", offsets=np.asarray(artist.get_offsets(), float).tolist())
            elif isinstance(artist, LineCollection):
                entry.update(kind="segments",
                             segments=[np.asarray(s, float).tolist() for s in artist.get_segments()])
            elif isinstance(artist, PolyCollection):
                entry.update(kind="polygons", vertices=[p.vertices.tolist() for p in artist.get_paths()])
            elif isinstance(artist, Patch):
                entry.update(kind="patch", vertices=artist.get_path().vertices.tolist())
            else:
                entry.update(kind=type(artist).__name__)
            out.append(entry)
    return out


def write_series(fig: Figure, path: str | Path) -> None:
    """:func:`drawn_series` of ``fig`` as JSON (NaN as null)."""
    import json

    def clean(value: Any) -> Any:
        if isinstance(value, float):
            return value if math.isfinite(value) else None
        if isinstance(value, list):
            return [clean(v) for v in value]
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        return value

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(clean(drawn_series(fig)), indent=1))


def _save(fig: Figure, path: str | Path) -> Figure:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, format="png")
    return fig


def _is_missing(value: Any) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _finite(value: Any) -> bool:
    return not _is_missing(value) and math.isfinite(float(value))


def _natural_key(text: str) -> list[Any]:
    # "n8" before "n16"; digits compared as numbers
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", text)]


def policy_order(policies: Iterable[str], references: Collection[str] = ()) -> list[str]:
    """The policies named in ``references`` (the reference models, bonbon.policies.Kind.REFERENCE)
    first, then the rest, each in natural order (n8 before n16)."""
    names = list(dict.fromkeys(policies))
    refs = sorted((p for p in names if p in references), key=_natural_key)
    rest = sorted((p for p in names if p not in references), key=_natural_key)
    return refs + rest


def _n_colours(ns: Iterable[Any]) -> dict[int, Any]:
    """One viridis colour per distinct n, evenly spread (so n=2, 4, 8 stay distinguishable)."""
    from matplotlib import colormaps

    distinct = sorted({int(n) for n in ns if not _is_missing(n)})
    cmap = colormaps["viridis"]
    if len(distinct) == 1:
        return {distinct[0]: cmap(0.35)}
    return {n: cmap(0.8 * i / (len(distinct) - 1)) for i, n in enumerate(distinct)}


def _fmt_beta(beta: float) -> str:
    return f"{beta:.3g}"


# --------------------------------------------------------------------------------------------------
# frontier


PROXY_WHO = "the proxy reward model (models.reward)"
JUDGE_WHO = "the judge (models.judge)"
PROXY_LABEL = "win rate vs π_ref judged by the proxy reward model (models.reward; ties ½)"
JUDGE_LABEL = "win rate vs π_ref judged by the judge (models.judge; ties ½)"


def _panels(rows: pd.DataFrame) -> list[tuple[int | None, pd.DataFrame]]:
    """One panel per n of one dataset's rows: its reference, its best-of-n and the runs of that n (final
    points and checkpoints); runs without an n (pairs from the dataset) share one last panel."""
    kinds = rows["kind"]
    has_n = rows["n"].notna() if "n" in rows.columns else pd.Series(False, index=rows.index)
    ns = sorted({int(n) for n in rows.loc[(kinds != "reference") & has_n, "n"]})
    reference = rows[kinds == "reference"]
    panels: list[tuple[int | None, pd.DataFrame]] = [
        (n, pd.concat([reference, rows[(kinds != "reference") & has_n & (rows["n"] == n)]])) for n in ns]
    if ((kinds == "trained") & ~has_n).any():
        panels.append((None, pd.concat([reference, rows[(kinds == "trained") & ~has_n]])))
    return panels or [(None, rows)]


def plot_frontier(summary: pd.DataFrame, theory: pd.DataFrame, path: str | Path,
                  win_label: str = PROXY_LABEL, whose: str = PROXY_WHO) -> Figure:
    """Win rate against the reference vs KL(pi || pi_ref), one panel per n (the paper's figure is n = 8
    alone), with the best-of-n theory curve and best-of-n's KL at that n marked; below each, win rate vs
    mean response length with best-of-n's measured points (the off-target view).

    ``summary``: one row per policy (columns policy, kind, loss, n, beta, alpha, win_rate,
    win_rate_se, kl, kl_se, mean_length, ..., ``dataset`` when there are several, and ``run``/``step``
    where runs were evaluated at checkpoints). ``theory``: :func:`bonbon.theory.bon_curve` (n,
    win_rate, kl). A panel holds the reference (a diamond at its (kl, win_rate), or at (0, 1/2) where
    those are missing), best-of-n at its n (a star) and every run of that n: its final point (a marker
    per loss, one colour per run) and, where it was evaluated at checkpoints, its path from the
    reference through them (small markers). Error bars where the SE is finite (the analytic best-of-n
    KL has none). Every point is named in the panel's legend, below the panel, never on the data, so
    no two labels overlap. Runs without an n (pairs from the dataset) get a panel of their own;
    several datasets one pair of rows each. ``win_label`` (the y axis) and ``whose`` (the titles) say
    who judged the wins: pass :func:`bonbon.frontier.judge_view`'s summary with :data:`JUDGE_LABEL`
    and :data:`JUDGE_WHO` to draw the judge's.
    """
    missing = [c for c in ("policy", "kind", "win_rate", "kl") if c not in summary.columns]
    if missing:
        raise ValueError(f"summary lacks column(s) {missing} (columns: {list(summary.columns)})")
    if "n" not in summary.columns:
        summary = summary.assign(n=np.nan)
    datasets = sorted(summary["dataset"].astype(str).unique()) if "dataset" in summary.columns else []
    groups = [(d, summary[summary["dataset"].astype(str) == d]) for d in datasets] if len(datasets) > 1 else [
        (None, summary)]
    lengths = "mean_length" in summary.columns
    layout = [(dataset, _panels(rows)) for dataset, rows in groups]
    cols = max(len(panels) for _, panels in layout)
    per_dataset = 2 if lengths else 1
    fig = Figure(figsize=(6.0 * cols, 6.5 * per_dataset * len(layout)), layout="constrained")
    grid = fig.add_gridspec(per_dataset * len(layout), cols)
    for i, (dataset, panels) in enumerate(layout):
        where = f" ({dataset})" if dataset else ""
        for j, (n, rows) in enumerate(panels):
            name = f"n = {n}" if n is not None else "pairs from the dataset"
            ax = fig.add_subplot(grid[per_dataset * i, j])
            _draw_theory(ax, theory)
            if n is not None:
                ax.axvline(float(bon_kl(n)), color="0.55", linestyle="--", linewidth=0.8, gid="matched-kl",
                           label=f"best-of-{n}'s KL log n − (n−1)/n", zorder=1)
            _draw_policies(ax, rows, "kl", win_label)
            ax.set_xlabel("KL(π ‖ π_ref)  [nats]")
            ax.set_title(f"{name}: win rate by {whose} vs KL{where}", fontsize=10)
            if lengths:
                ax = fig.add_subplot(grid[per_dataset * i + 1, j])
                bon = groups[i][1]
                _draw_policies(ax, rows, "mean_length", win_label, bon[bon["kind"] == "best_of_n"])
                ax.set_xlabel("mean response length  [tokens]")
                ax.set_title(f"{name}: win rate by {whose} vs length{where}", fontsize=10)
    fig.suptitle(f"The best-of-n frontier, one panel per n; every win rate judged by {whose}")
    return _save(fig, path)


def _draw_theory(ax: Any, theory: pd.DataFrame) -> None:
    """The best-of-n curve with its integer n marked (powers of two only when crowded)."""
    th = theory.sort_values("n")
    ax.plot(th["kl"].to_numpy(float), th["win_rate"].to_numpy(float), color="0.25", linewidth=1.2,
            marker=".", markersize=6, label=THEORY_LABEL, gid="theory", zorder=2)
    ns = th["n"].astype(int).to_numpy()
    annotate = ns if len(ns) <= 12 else [n for n in ns if n & (n - 1) == 0]
    for n, kl, wr in zip(ns, th["kl"], th["win_rate"], strict=True):
        if n in annotate:
            ax.annotate(f"{n}", (kl, wr), xytext=(-4, 5), textcoords="offset points", fontsize=7,
                        color="0.3", ha="right")


def _is_checkpoint(summary: pd.DataFrame) -> pd.Series:
    """Rows of intermediate checkpoints ({run}-step{S}), as opposed to final policies."""
    if not {"run", "step"} <= set(summary.columns):
        return pd.Series(False, index=summary.index)
    return summary["run"].notna() & (summary["policy"] != summary["run"])


def _policy_style(d: Mapping[str, Any], colours: Mapping[int, Any],
                  alphas: set[float]) -> tuple[str, Any, int, str]:
    """(marker, colour, size, label) of one summary row."""
    n, kind = d.get("n"), d["kind"]
    colour = colours.get(int(n), "C1") if not _is_missing(n) else "C1"
    if kind == "reference":
        return REFERENCE_MARKER, "black", 45, "reference"
    if kind == "best_of_n":
        return BEST_OF_N_MARKER, colour, 140, f"BoN n={int(n)}" if not _is_missing(n) else "BoN"
    return LOSS_MARKERS.get(d.get("loss"), _OTHER_MARKER), colour, 55, _trained_label(d, alphas)


def _trained_label(d: Mapping[str, Any], alphas: set[float]) -> str:
    """n, beta, (bonbon, where the alphas differ) alpha and LoRA of a trained row; its name without them."""
    parts = [] if _is_missing(d.get("n")) else [f"n={int(d['n'])}"]
    if _finite(d.get("beta")):
        parts.append(f"β={_fmt_beta(float(d['beta']))}")
    if d.get("loss") == "bonbon" and len(alphas) > 1 and _finite(d.get("alpha")):
        parts.append(f"α={float(d['alpha']):g}")
    if is_lora_run(str(d["policy"])):  # beside the full-weight run of the same n, beta, alpha
        parts.append("LoRA")
    return " ".join(parts) or str(d["policy"])


def frontier_label(d: Mapping[str, Any], alphas: set[float]) -> str:
    """The legend label of a frontier point: ``π_ref``, ``best-of-{n}``, or ``{loss} n=.. β=.. [α=..]``."""
    if d["kind"] == "reference":
        return "π_ref"
    if d["kind"] == "best_of_n":
        return f"best-of-{int(d['n'])}" if not _is_missing(d.get("n")) else "best-of-n"
    loss = d.get("loss")
    return f"{loss} {_trained_label(d, alphas)}" if not _is_missing(loss) else _trained_label(d, alphas)


def _draw_paths(ax: Any, summary: pd.DataFrame, x: str, start: tuple[float, float],
                colours: Mapping[str, Any]) -> list[float]:
    """Each run evaluated at checkpoints as a line from the reference through them to its final point."""
    checkpoint = _is_checkpoint(summary)
    if not checkpoint.any():
        return []
    xs: list[float] = []
    for run in sorted(summary.loc[checkpoint, "run"].unique(), key=_natural_key):
        path = summary[(summary["run"] == run)].sort_values("step")
        path = path[path[x].notna() & path["win_rate"].notna()]
        if path.empty:
            continue
        first = path.iloc[0]
        colour = colours.get(run, "C1")
        px = [start[0], *path[x].astype(float)]
        py = [start[1], *path["win_rate"].astype(float)]
        ax.plot(px, py, color=colour, linewidth=1, alpha=0.8, zorder=3, gid=f"path:{run}", label="_nolegend_")
        marker = LOSS_MARKERS.get(first["loss"], _OTHER_MARKER)
        for row in path[_is_checkpoint(path)].itertuples(index=False):
            ax.scatter([getattr(row, x)], [row.win_rate], marker=marker, s=18, color=colour,
                       edgecolors="black", linewidths=0.4, zorder=4, gid=f"checkpoint:{row.policy}",
                       label="_nolegend_")
        xs += px
    return xs


def _draw_policies(ax: Any, summary: pd.DataFrame, x: str, win_label: str = PROXY_LABEL,
                   best_of_n: pd.DataFrame | None = None) -> None:
    """Every final policy as a point at (x, win rate), runs' checkpoint paths, and the legend below;
    on the length panel best-of-n's measured curve through every n of ``best_of_n``."""
    ax.axhline(0.5, color="0.55", linestyle=":", linewidth=1, gid="chance", zorder=1, label="_nolegend_")
    alphas = set()
    if {"loss", "alpha"} <= set(summary.columns):
        alphas = {float(a) for a in summary.loc[summary["loss"] == "bonbon", "alpha"] if _finite(a)}
    finals = summary[~_is_checkpoint(summary)]
    trained = sorted(finals.loc[finals["kind"] == "trained", "policy"].astype(str), key=_natural_key)
    cycle = [f"C{i}" for i in range(10) if i != 7]  # C7 is grey: the theory's colour
    colours = {name: cycle[i % len(cycle)] for i, name in enumerate(trained)}
    reference = finals[finals["kind"] == "reference"]
    start = (0.0, 0.5)
    if len(reference):
        ref = reference.iloc[0]
        start = (float(ref[x]) if _finite(ref[x]) else 0.0,
                 float(ref["win_rate"]) if _finite(ref["win_rate"]) else 0.5)
    xs = [start[0], *_draw_paths(ax, summary, x, start, colours)]
    if x == "mean_length":  # best-of-n's own length curve, from the reference through its n
        bon = (best_of_n if best_of_n is not None else finals[finals["kind"] == "best_of_n"]).sort_values("n")
        bon = bon[bon[x].notna() & bon["win_rate"].notna()]
        if len(bon):
            ax.plot([start[0], *bon[x].astype(float)], [start[1], *bon["win_rate"].astype(float)],
                    color="0.25", linewidth=1.2, gid="bon-length", label="best-of-n (measured), from π_ref",
                    zorder=2)
    order = {"reference": 0, "best_of_n": 1}
    for row in sorted(finals.itertuples(index=False),
                      key=lambda r: (order.get(r.kind, 2), _natural_key(str(r.policy)))):
        d = row._asdict()
        name = str(d["policy"])
        marker, size = LOSS_MARKERS.get(d.get("loss"), _OTHER_MARKER), 55
        colour = colours.get(name, "C1")
        if d["kind"] == "reference":
            marker, size, colour = REFERENCE_MARKER, 45, "black"
        elif d["kind"] == "best_of_n":
            marker, size, colour = BEST_OF_N_MARKER, 160, "gold"
        px, wr = d.get(x), d["win_rate"]
        if d["kind"] == "reference":
            px, wr = start
        elif not (_finite(px) and _finite(wr)):
            continue  # nowhere to put it; the summary table still lists it
        px, wr = float(px), float(wr)
        xs.append(px)
        ax.scatter([px], [wr], marker=marker, s=size, color=colour, edgecolors="black", linewidths=0.6,
                   zorder=5, gid=f"policy:{name}", label=frontier_label(d, alphas))
        se_x = d.get("kl_se") if x == "kl" else None
        for axis, se in (("x", se_x), ("y", d.get("win_rate_se"))):
            if _finite(se) and float(se) > 0:
                err = {"xerr": float(se)} if axis == "x" else {"yerr": float(se)}
                container = ax.errorbar([px], [wr], **err, fmt="none", ecolor=colour, elinewidth=1,
                                        capsize=2, zorder=3, label="_nolegend_")
                for collection in container.lines[2]:
                    collection.set_gid(f"{axis}err:{name}")
    _frontier_axes(ax, x, xs)
    ax.set_ylabel(win_label, fontsize=8)
    ax.grid(True, alpha=0.3)
    handles = [a for a in (*ax.lines, *ax.collections) if a.get_gid() and not a.get_label().startswith("_")]
    if _is_checkpoint(summary).any():
        handles.append(Line2D([], [], color="0.4", marker="o", markersize=4, linewidth=1,
                              label="a run's path: π_ref → checkpoints → final"))
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncols=2, fontsize=7,
              framealpha=0.9)


def _frontier_axes(ax: Any, x: str, xs: list[float]) -> None:
    """On the KL panel: the theory past n_max where points lie further out, and a log scale far out."""
    finite = [v for v in xs if math.isfinite(v)]
    if x != "kl":
        return
    theory_max = max((line.get_xdata().max() for line in ax.lines if line.get_gid() == "theory"), default=0.0)
    xmax = max(finite + [theory_max])
    if xmax > theory_max > 0:  # the curve goes on past n_max: continuous in n, up to the farthest point
        kls = np.geomspace(theory_max, xmax, 50)
        ax.plot(kls, theory_win_rate_at_kl(kls), color="0.25", linewidth=1, linestyle="--", zorder=2,
                gid="extended-theory", label="_nolegend_")
    if xmax > 5:  # a run far out in KL would squash best-of-n's region: log scale past 1 nat
        ax.set_xscale("symlog", linthresh=1.0, linscale=1.0)
        ax.set_xlim(-0.02, xmax * 1.3)
    else:
        ax.set_xlim(-0.04 * max(xmax, 0.1), None)


def plot_judge_vs_proxy(summary: pd.DataFrame, theory: pd.DataFrame, path: str | Path) -> Figure:
    """Each final policy at its KL twice: its win rate by the proxy (the training reward, hollow marker,
    gid ``proxy:{name}``) and by the judge (filled, ``judge:{name}``), joined by a segment
    (``gap:{name}``), with the best-of-n theory curve. Where the proxy's point stands above the judge's,
    the policy (or best-of-n's pick) exploits what the proxy gets wrong: over-optimization.
    ``summary`` needs ``judge_win_rate`` beside ``win_rate``; one panel per dataset."""
    missing = [c for c in ("policy", "kind", "kl", "win_rate", "judge_win_rate") if c not in summary.columns]
    if missing:
        raise ValueError(f"summary lacks column(s) {missing} (columns: {list(summary.columns)})")
    datasets = sorted(summary["dataset"].astype(str).unique()) if "dataset" in summary.columns else [None]
    fig = Figure(figsize=(8.0, 6.0 * len(datasets)), layout="constrained")
    for i, dataset in enumerate(datasets):
        rows = summary if dataset is None else summary[summary["dataset"].astype(str) == dataset]
        rows = rows[~_is_checkpoint(rows)]
        ax = fig.add_subplot(len(datasets), 1, i + 1)
        _draw_theory(ax, theory)
        ax.axhline(0.5, color="0.55", linestyle=":", linewidth=1, gid="chance", zorder=1)
        colours = _n_colours(rows.loc[rows["kind"] != "reference", "n"] if "n" in rows else [])
        alphas: set[float] = set()
        if {"loss", "alpha"} <= set(rows.columns):
            alphas = {float(a) for a in rows.loc[rows["loss"] == "bonbon", "alpha"] if _finite(a)}
        for row in rows.itertuples(index=False):
            d = row._asdict()
            kl = 0.0 if d["kind"] == "reference" else d["kl"]
            if not (_finite(kl) and _finite(d["win_rate"]) and _finite(d["judge_win_rate"])):
                continue
            name = str(d["policy"])
            marker, colour, size, text = _policy_style(d, colours, alphas)
            proxy, judge = float(d["win_rate"]), float(d["judge_win_rate"])
            ax.plot([kl, kl], [proxy, judge], color=colour, linewidth=1, zorder=3, gid=f"gap:{name}")
            ax.scatter([kl], [proxy], marker=marker, s=size, facecolors="white", edgecolors=colour,
                       linewidths=1.2, zorder=4, gid=f"proxy:{name}")
            ax.scatter([kl], [judge], marker=marker, s=size, color=colour, edgecolors="black", linewidths=0.6,
                       zorder=5, gid=f"judge:{name}")
            ax.annotate(text, (kl, judge), xytext=(5, -9), textcoords="offset points", fontsize=7)
        handles = [h for h in ax.lines if h.get_gid() == "theory"] + [
            Line2D([], [], linestyle="none", marker="o", color="0.4", markerfacecolor="white",
                   label="proxy (models.reward)"),
            Line2D([], [], linestyle="none", marker="o", color="0.4", label="judge (models.judge)"),
        ]
        ax.legend(handles=handles, loc="lower right", fontsize=8, framealpha=0.9)
        ax.set_xlabel("KL(π ‖ π_ref)  [nats]")
        ax.set_ylabel("win rate vs reference (ties ½)")
        ax.set_title("Proxy vs judge win rate" + (f" ({dataset})" if dataset else ""))
        ax.grid(True, alpha=0.3)
    return _save(fig, path)


# --------------------------------------------------------------------------------------------------
# evaluation distributions


def _check_tables(eval_tables: Mapping[str, pd.DataFrame], columns: tuple[str, ...]) -> None:
    if not eval_tables:
        raise ValueError("no evaluation tables to plot")
    for name, table in eval_tables.items():
        missing = [c for c in columns if c not in table.columns]
        if missing:
            raise ValueError(f"evaluation table of {name!r} lacks column(s) {missing} "
                             f"(columns: {list(table.columns)})")


def plot_reward_distributions(eval_tables: Mapping[str, pd.DataFrame], path: str | Path,
                              references: Collection[str] = ()) -> Figure:
    """Reward of every evaluated response, one horizontal violin per policy (those named in
    ``references``, the reference models, on top).

    The white dot is the mean reward, the bar the median; the dotted line is the reference's median.
    """
    _check_tables(eval_tables, ("reward",))
    order = policy_order(eval_tables, references)
    data = [eval_tables[p]["reward"].dropna().to_numpy(float) for p in order]
    fig = Figure(figsize=(8.0, 1.2 + 0.45 * len(order)), layout="constrained")
    ax = fig.add_subplot()
    positions = np.arange(len(order))[::-1]  # first policy at the top
    for pos, name, values in zip(positions, order, data, strict=True):
        colour = "0.45" if name in references else "C0"
        if len(values) >= 2 and np.ptp(values) > 0:
            parts = ax.violinplot([values], positions=[pos], orientation="horizontal", showmedians=True,
                                  showextrema=False, widths=0.8)
            for body in parts["bodies"]:
                body.set_facecolor(colour)
                body.set_alpha(0.55)
                body.set_gid(f"violin:{name}")
            parts["cmedians"].set_color("black")
        elif len(values):
            ax.scatter(values, np.full(len(values), pos), color=colour, s=12, gid=f"violin:{name}")
        if len(values):
            ax.scatter([values.mean()], [pos], color="white", edgecolors="black", s=22, zorder=3,
                       gid=f"mean:{name}")
    if order[0] in references and len(data[0]):
        ax.axvline(float(np.median(data[0])), color="0.45", linestyle=":", linewidth=1)
    ax.set_yticks(positions, [f"{p}  (N={len(v)})" for p, v in zip(order, data, strict=True)], fontsize=8)
    ax.set_xlabel("reward (reward model score)")
    ax.set_title("Reward distribution per policy (○ mean, | median)")
    ax.grid(True, axis="x", alpha=0.3)
    return _save(fig, path)


def plot_length_distributions(eval_tables: Mapping[str, pd.DataFrame], path: str | Path,
                              references: Collection[str] = ()) -> Figure:
    """Response length in tokens, one horizontal box per policy (``references`` on top), with the
    unfinished share.

    A response is unfinished when it hit the token limit before an end-of-sequence token
    (``finished`` is False); its length is then the limit, so a large share piles the box at the right.
    """
    _check_tables(eval_tables, ("n_tokens", "finished"))
    order = policy_order(eval_tables, references)
    data = [eval_tables[p]["n_tokens"].dropna().to_numpy(float) for p in order]
    unfinished = [1.0 - float(eval_tables[p]["finished"].astype(bool).mean()) if len(eval_tables[p])
                  else float("nan") for p in order]
    fig = Figure(figsize=(8.0, 1.2 + 0.45 * len(order)), layout="constrained")
    ax = fig.add_subplot()
    positions = np.arange(len(order))[::-1]
    parts = ax.boxplot(data, positions=positions, orientation="horizontal", patch_artist=True, widths=0.6,
                       showmeans=True, manage_ticks=False,
                       meanprops={"marker": "o", "markerfacecolor": "white", "markeredgecolor": "black",
                                  "markersize": 4},
                       medianprops={"color": "black"}, flierprops={"markersize": 2, "alpha": 0.4})
    for box, mean, median, name in zip(parts["boxes"], parts["means"], parts["medians"], order, strict=True):
        box.set_facecolor("0.75" if name in references else "C0")
        box.set_alpha(0.7)
        box.set_gid(f"box:{name}")
        mean.set_gid(f"mean:{name}")
        median.set_gid(f"median:{name}")
    ax.set_yticks(positions, order, fontsize=8)
    for pos, share in zip(positions, unfinished, strict=True):
        if math.isfinite(share):
            ax.annotate(f"unfinished {100 * share:.1f}%", (1.0, pos), xycoords=("axes fraction", "data"),
                        xytext=(4, 0), textcoords="offset points", va="center", fontsize=7)
    ax.set_xlabel("response length [tokens]")
    ax.set_title("Response length per policy (○ mean; unfinished = hit the token limit)")
    ax.grid(True, axis="x", alpha=0.3)
    return _save(fig, path)


# --------------------------------------------------------------------------------------------------
# training


TRAINING_PANELS = (
    ("loss", "training loss"),
    ("margin", "margin h: log-ratio chosen − rejected"),
    ("reward_accuracy", "reward accuracy"),
    ("grad_norm", "gradient norm (before clipping)"),
)


def _run_info(run: str, frame: pd.DataFrame, runs: Mapping[str, Mapping[str, Any]] | None) -> dict[str, Any]:
    info = dict(runs[run]) if runs is not None and run in runs else {}
    for key in ("loss", "n", "beta", "alpha"):
        if key not in info and key in frame.attrs:
            info[key] = frame.attrs[key]
    for key in ("n", "beta", "alpha"):  # constant label columns (not "loss": that is the loss value)
        if key not in info and key in frame.columns and frame[key].nunique(dropna=False) == 1:
            info[key] = frame[key].iloc[0]
    return info


def target_beta(info: Mapping[str, Any]) -> float | None:
    """The run's beta (``beta: auto`` is already beta*(n) there, see ``bonbon.runs.expand_runs``), or None."""
    beta = info.get("beta")
    return float(beta) if _finite(beta) else None


def _training_label(run: str, info: Mapping[str, Any]) -> str:
    """A run's legend label from its loss, n, beta and (bonbon) alpha; its name where the loss is unknown."""
    if "loss" not in info:
        return run
    parts = [str(info["loss"])]
    if info.get("n") is not None and not _is_missing(info.get("n")):
        parts.append(f"n={int(info['n'])}")
    beta = target_beta(info)
    if beta is not None:
        parts.append(f"β={_fmt_beta(beta)}")
    if info["loss"] == "bonbon" and _finite(info.get("alpha")):
        parts.append(f"α={float(info['alpha']):g}")
    return " ".join(parts)


def _plot_training_column(ax: Any, frame: pd.DataFrame, column: str, window: int, colour: str, style: str,
                          label: str, run: str) -> bool:
    """One run's line of one metric (rolling mean over ``window`` steps) and its held-out ``val_`` points
    (unsmoothed: few); whether every value drawn is positive (a log scale then fits)."""
    if column not in frame.columns:
        return True
    values = frame[column].astype(float)
    if window > 1:
        values = values.rolling(window, min_periods=1).mean()
    ok = values.notna().to_numpy()
    if not ok.any():
        return True
    positive = bool((values[ok] > 0).all())
    ax.plot(frame["step"].to_numpy(float)[ok], values.to_numpy()[ok], color=colour, linestyle=style,
            linewidth=1.2, label=label, gid=f"run:{run}")
    held_out = f"val_{column}"
    if held_out in frame.columns and frame[held_out].notna().any():
        val = frame[frame[held_out].notna()]
        positive &= bool((val[held_out] > 0).all())
        ax.plot(val["step"].to_numpy(float), val[held_out].to_numpy(float), color=colour, linestyle=":",
                marker="o", markersize=3, linewidth=1, label="_nolegend_", gid=f"val:{run}")
    return positive


def plot_training_curves(metrics: Mapping[str, pd.DataFrame], path: str | Path,
                         runs: Mapping[str, Mapping[str, Any]] | None = None,
                         smooth: int | None = None) -> Figure:
    """A 2x2 grid over optimizer steps: loss, margin, reward accuracy, gradient norm; one line per run.

    ``metrics``: run -> its metrics.csv as a DataFrame. ``runs``: run -> {loss, n, beta[, alpha]}
    (the workflow's expanded runs, ``bonbon.runs.expand_runs``, whose beta is a number); where a run
    is missing there, ``frame.attrs`` is read instead, then constant ``n`` / ``beta`` / ``alpha``
    columns. The ``loss`` column must hold the loss values. On the margin panel, each ipo/bonbon run
    gets a dashed line in its colour at its target margin 1/(2 beta), the value the IPO term pulls the
    margin to.
    ``smooth``: rolling-mean window in steps; None picks one step per 1% of the longest run.
    """
    if not metrics:
        raise ValueError("no training metrics to plot")
    for run, frame in metrics.items():
        if "step" not in frame.columns:
            raise ValueError(f"metrics of run {run!r} lack the 'step' column "
                             f"(columns: {list(frame.columns)})")
        if "loss" in frame.columns and not pd.api.types.is_numeric_dtype(frame["loss"]):
            raise ValueError(f"metrics of run {run!r}: column 'loss' holds {frame['loss'].iloc[0]!r}, "
                             "not the loss values; pass the run's loss name in "
                             "runs={run: {'loss': ..., 'n': ..., 'beta': ...}}")
    names = sorted(metrics, key=_natural_key)
    infos = {r: _run_info(r, metrics[r], runs) for r in names}
    labels = {r: _training_label(r, infos[r]) for r in names}
    if len(set(labels.values())) < len(labels):  # several datasets: the run name tells them apart
        labels = {r: r for r in names}

    longest = max(len(metrics[r]) for r in names)
    window = max(1, longest // 100) if smooth is None else max(1, int(smooth))
    cycle = [f"C{i}" for i in range(10)]
    colours = {r: cycle[i % 10] for i, r in enumerate(names)}
    styles = {r: "-" if i < 10 else "--" for i, r in enumerate(names)}

    fig = Figure(figsize=(11.0, 7.5), layout="constrained")
    axes = fig.subplots(2, 2, sharex=True).ravel()
    for ax, (column, title) in zip(axes, TRAINING_PANELS, strict=True):
        positive = all([_plot_training_column(ax, metrics[run].sort_values("step"), column, window,
                                              colours[run], styles[run], labels[run], run) for run in names])
        if column == "margin":
            for run in names:
                info = infos[run]
                beta = target_beta(info)
                if info.get("loss") in ("ipo", "bonbon") and beta is not None:
                    ax.axhline(1.0 / (2.0 * beta), color=colours[run], linestyle="--", linewidth=1, alpha=0.8,
                               gid=f"target:{run}", label="_nolegend_")
            title += " (dashed: 1/(2β))"
        if column in ("loss", "grad_norm") and positive and ax.lines:
            ax.set_yscale("log")
        if column == "reward_accuracy":
            ax.set_ylim(-0.02, 1.02)
        ax.set_title(title, fontsize=10)
        ax.grid(True, alpha=0.3)
    for ax in axes[2:]:
        ax.set_xlabel("optimizer step")
    handles, legend_labels = axes[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, legend_labels, loc="outside lower center", ncols=min(4, len(handles)), fontsize=8)
    validated = any(c.startswith("val_") and metrics[r][c].notna().any()
                    for r in names for c in metrics[r].columns)
    fig.suptitle("Training curves of the alignment runs"
                 + (f" (rolling mean of {window} steps)" if window > 1 else "")
                 + ("; dotted with dots: held-out validation pairs" if validated else ""))
    return _save(fig, path)
