"""The figures of the notebooks, as functions returning matplotlib Figures.

Figures are built with ``matplotlib.figure.Figure`` (no pyplot, no global figure list):
they render with the non-interactive Agg canvas whatever backend a kernel has, nothing
leaks between calls, and the same call works in a test, a script or Jupyter. `show` saves
a figure as PNG and displays that PNG, so the notebook, its HTML export and the report
folder hold the very same image.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from parsec.analysis import published
from parsec.analysis.published import PublishedFigure
from parsec.analysis.stats import ecdf, quantiles

SIZE = (8.0, 4.8)
DPI = 110


def _empty(ax, text: str = "no successful measurements in this selection") -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])


def _log_scale_fits(values) -> bool:
    data = np.asarray(values, dtype=float)
    data = data[data > 0]
    return data.size > 1 and data.max() / data.min() > 20


def _published_mark(ax, figure: PublishedFigure, at: float, color: str, *, vertical: bool = False) -> None:
    """A published number as hollow diamonds; a range (low < high) as a segment between two."""
    values = [figure.low, figure.high] if figure.low != figure.high else [figure.low]
    xs, ys = (([at] * len(values), values) if vertical else (values, [at] * len(values)))
    ax.plot(xs, ys, "D-", mfc="none", color=color, markersize=7, linewidth=1.5, alpha=0.8)


_LEVEL = {"p50": 0.5, "p90": 0.9, "p99": 0.99}


def cdf(frame: pd.DataFrame, group: str, *, title: str, xlabel: str = "duration [s]",
        published_marks: dict[str, list[PublishedFigure]] | None = None, unit: str = " s",
        empty: str = "no successful measurements in this selection") -> Figure:
    """One empirical CDF per value of ``group`` (successes expected), p50/p90 marked on each
    curve, sample count and quantiles in the legend; ``published_marks`` ({group: [figures]})
    adds the published quantiles as hollow diamonds (a range as a segment), labelled as
    public-network figures. ``unit`` follows each quantile in the legend (``"×"`` for
    ratios); ``empty`` is written on a figure with no curve."""
    fig = Figure(figsize=SIZE, dpi=DPI)
    ax = fig.subplots()
    groups = sorted(frame[group].unique())
    for index, name in enumerate(groups):
        values = frame.loc[frame[group] == name, "duration"]
        x, y = ecdf(values)
        q = quantiles(values, (0.5, 0.9))
        color = f"C{index % 10}"
        ax.step(x, y, where="post", color=color,
                label=f"{name} (n={len(values)}, p50 {q['p50']:.2f}{unit}, p90 {q['p90']:.2f}{unit})")
        ax.plot([q["p50"], q["p90"]], [0.5, 0.9], "o", color=color, markersize=5)
        for figure in (published_marks or {}).get(name, []):
            _published_mark(ax, figure, _LEVEL[figure.metric], color)
    if published_marks and any(published_marks.get(name) for name in groups):
        ax.plot([], [], "D", mfc="none", color="0.3", label=f"quantiles, {published.LABEL}")
    if not groups:
        _empty(ax, empty)
    elif _log_scale_fits(frame["duration"]):
        ax.set_xscale("log")
    for level in (0.5, 0.9):
        ax.axhline(level, color="0.85", linewidth=0.8, zorder=0)
    ax.set(title=title, xlabel=xlabel, ylabel="share of operations ≤ x", ylim=(0, 1.02))
    ax.grid(True, which="major", alpha=0.3)
    if groups:
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def boxplot(frame: pd.DataFrame, group: str, *, title: str, ylabel: str = "duration [s]") -> Figure:
    """Notched boxplots (notch: 95 % interval of the median) per value of ``group``, n under each."""
    fig = Figure(figsize=SIZE, dpi=DPI)
    ax = fig.subplots()
    groups = sorted(frame[group].unique())
    data = [frame.loc[frame[group] == name, "duration"].to_numpy() for name in groups]
    if groups:
        ax.boxplot(data, notch=True, showfliers=True, flierprops={"markersize": 3, "alpha": 0.5})
        ax.set_xticks(range(1, len(groups) + 1), [f"{name}\nn={len(d)}" for name, d in zip(groups, data)],
                      fontsize=8, rotation=30 if len(groups) > 6 else 0)
        if _log_scale_fits(frame["duration"]):
            ax.set_yscale("log")
    else:
        _empty(ax)
    ax.set(title=title, ylabel=ylabel)
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def daily_boxplot(frame: pd.DataFrame, *, title: str, ylabel: str = "duration [s]") -> Figure:
    """Notched boxplots per UTC day (the ``date`` column)."""
    return boxplot(frame, "date", title=title, ylabel=ylabel)


def rates(table: pd.DataFrame, group: str, *, title: str,
          published_rates: dict[str, PublishedFigure] | None = None) -> Figure:
    """Bars of error and not-found rates (percent) per group, with n above each pair;
    ``published_rates`` ({group: figure}) adds published error rates, labelled as
    public-network figures."""
    fig = Figure(figsize=SIZE, dpi=DPI)
    ax = fig.subplots()
    labels = [str(v) for v in table[group]]
    x = np.arange(len(labels))
    width = 0.38
    if labels:
        ax.bar(x - width / 2, 100 * table["error_rate"], width, label="error", color="C3")
        ax.bar(x + width / 2, 100 * table["not_found_rate"], width, label="not found", color="C1")
        top = max(100 * table[["error_rate", "not_found_rate"]].to_numpy().max(), 1.0)
        marks = [(xi, published_rates[name]) for xi, name in zip(x, labels)
                 if published_rates and name in published_rates]
        for xi, figure in marks:
            scaled = PublishedFigure(**{**figure.__dict__, "low": 100 * figure.low, "high": 100 * figure.high})
            _published_mark(ax, scaled, xi - width / 2, "0.2", vertical=True)
            top = max(top, scaled.high)
        for xi, n in zip(x, table["n"]):
            ax.text(xi, top * 1.02, f"n={n}", ha="center", va="bottom", fontsize=8)
        if marks:
            ax.plot([], [], "D", mfc="none", color="0.2", label=f"error rate, {published.LABEL}")
        ax.set_xticks(x, labels, fontsize=8, rotation=30 if len(labels) > 6 else 0)
        ax.set_ylim(0, top * 1.15)
        ax.legend(fontsize=8)
    else:
        _empty(ax, "no measurements")
    ax.set(title=title, ylabel="share of operations [%]")
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def speedups(table: pd.DataFrame, *, title: str,
             published_speedups: dict[tuple[str, str], PublishedFigure] | None = None) -> Figure:
    """Speed-up against the baseline per (kind, fleet), bootstrap interval as error bars,
    a line at 1 (as fast as the baseline); published speed-ups as hollow markers."""
    fig = Figure(figsize=SIZE, dpi=DPI)
    ax = fig.subplots()
    rows = table.dropna(subset=["speedup"]).reset_index(drop=True)
    if len(rows):
        x = np.arange(len(rows))
        colors = [f"C{0 if kind == 'provide' else 1}" for kind in rows["kind"]]
        below = (rows["speedup"] - rows["ci_low"]).clip(lower=0)
        above = (rows["ci_high"] - rows["speedup"]).clip(lower=0)
        ax.bar(x, rows["speedup"], color=colors, yerr=[below, above], capsize=4)
        ax.set_xticks(x, [f"{f}\n{k}\nn={n}" for f, k, n in zip(rows["fleet"], rows["kind"], rows["n"])], fontsize=8)
        marks = [(xi, published_speedups[(k, f)]) for xi, k, f in zip(x, rows["kind"], rows["fleet"])
                 if published_speedups and (k, f) in published_speedups]
        for xi, figure in marks:
            _published_mark(ax, figure, xi, "0.2", vertical=True)
        if marks:
            ax.plot([], [], "D", mfc="none", color="0.2", label=f"p50 speed-up, {published.LABEL}")
            ax.legend(fontsize=8)
        if rows["ci_high"].max() / max(rows["ci_low"].min(), 1e-9) > 30:
            ax.set_yscale("log")
        ax.axhline(1.0, color="0.3", linewidth=0.8)
        baseline = rows["baseline"].iloc[0]
        ax.set_ylabel(f"p50 of {baseline} / p50 of fleet (× faster)")
    else:
        _empty(ax, "only one fleet in this selection: nothing to compare")
    ax.set_title(title)
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def rpc_counts(table: pd.DataFrame, types: list[str], *, title: str) -> Figure:
    """Mean RPCs per operation by message type, stacked, one bar per (fleet, kind)."""
    fig = Figure(figsize=SIZE, dpi=DPI)
    ax = fig.subplots()
    if len(table) and types:
        x = np.arange(len(table))
        bottom = np.zeros(len(table))
        for index, rpc_type in enumerate(types):
            values = table[rpc_type].to_numpy(dtype=float)
            ax.bar(x, values, bottom=bottom, label=rpc_type, color=f"C{index % 10}")
            bottom += values
        ax.set_xticks(x, [f"{f}\n{k}\nn={n}" for f, k, n in zip(table["fleet"], table["kind"], table["traced"])],
                      fontsize=8)
        ax.legend(fontsize=8)
    else:
        _empty(ax, "no traces in this selection")
    ax.set(title=title, ylabel="mean RPCs per operation")
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def save(fig: Figure, name: str, output_dir: str | Path) -> Path:
    """``output_dir/name.png`` (the folder is created)."""
    path = Path(output_dir) / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    return path


def save_table(table: pd.DataFrame, name: str, output_dir: str | Path) -> Path:
    """``output_dir/name.csv``: the numbers behind a figure, for checks and other tools."""
    path = Path(output_dir) / f"{name}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(path, index=False)
    return path


def show(fig: Figure, name: str, output_dir: str | Path) -> Path:
    """Save the figure as PNG and display that PNG (in Jupyter; a no-op elsewhere)."""
    path = save(fig, name, output_dir)
    try:
        from IPython import get_ipython
        from IPython.display import Image, display
    except ImportError:
        return path
    if get_ipython() is not None:
        titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
        display(Image(filename=str(path), alt=titles[0] if titles else name))
    return path
