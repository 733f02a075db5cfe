"""Shared look of the figures: paper-size panels, 7-8 pt fonts, axis labels, saving as PNG and PDF.

Figures are built on `matplotlib.figure.Figure` directly (no pyplot): no global state, no GUI
backend, nothing to close. Every public `figN_*` function saves through `save` and returns the
paths it wrote; a `draw_*` twin (decorated with `@paper_style()`) returns the Figure itself, which
tests and notebooks use.
"""

from __future__ import annotations

import contextlib
import math
import os
import warnings
from typing import Iterator, Sequence

import matplotlib
from matplotlib import ticker
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure

PANEL_IN = 2.3  # width and height of one panel, inches: two panels fit a 3.3 in column... nearly
FORMATS = ("png", "pdf")
RC = {
    "font.size": 8, "axes.labelsize": 8, "axes.titlesize": 8, "xtick.labelsize": 7, "ytick.labelsize": 7,
    "legend.fontsize": 7, "legend.title_fontsize": 7, "figure.titlesize": 9, "lines.linewidth": 1.0,
    "axes.linewidth": 0.6, "xtick.major.width": 0.6, "ytick.major.width": 0.6, "pdf.fonttype": 42,
    "savefig.dpi": 200, "savefig.bbox": "tight", "savefig.pad_inches": 0.03,
}

# What each column means, for axis labels (units in parentheses); short enough for one panel.
LABELS = {
    "measure.jacobian_test": r"Jacobian norm $\|J\|_F$ (test mean)",
    "measure.jacobian_train": r"Jacobian norm $\|J\|_F$ (train mean)",
    "measure.transitions_test": "transitions per test ellipse",
    "measure.transitions_train": "transitions per train ellipse",
    "measure.jacobian_trajectory_train": r"$\|J\|_F$ along train-point ellipses",
    "measure.jacobian_trajectory_random": r"$\|J\|_F$ along random ellipses",
    "measure.logit_jacobian_test": r"logit Jacobian $\|\partial h/\partial x\|_F$ (test)",
    "measure.logit_jacobian_train": r"logit Jacobian $\|\partial h/\partial x\|_F$ (train)",
    "measure.logit_jacobian_sq_test": r"logit Jacobian $\|\partial h/\partial x\|_F^2$ (test)",
    "measure.pacbayes_flatness": r"PAC-Bayes flatness $1/\sigma'^2$",
    "measure.pacbayes_mag_flatness": r"magnitude-aware flatness $1/\alpha'^2$",
    "measure.inverse_margin": r"inverse margin $1/\gamma^2$",
    "measure.dist_init": r"distance from init $\|w - w_0\|$",
    "measure.frob_distance_sum": r"layers from init $\Sigma_l \|W_l - W_l^0\|_F$",
    "measure.fisher_rao": "Fisher-Rao norm",
    "gap.loss": "loss gap: test − train (nats)",
    "gap.accuracy": "accuracy gap: train − test\n(= test error)",
    "model.n_neurons": "hidden neurons",
    "jacobian_mean": r"$\|J\|_F$, mean along trajectory",
    "transition_density": "transitions per unit length",
}
J_DEFINITION = r"$J = \partial\,\mathrm{softmax}(h(x))/\partial x$"


def label(column: str) -> str:
    """Axis label of a column: LABELS, or the column name without its namespace."""
    return LABELS.get(column, column.split(".", 1)[-1].replace("_", " "))


@contextlib.contextmanager
def paper_style() -> Iterator[None]:
    """Fonts and line widths for print; active while a figure is built and saved."""
    with sns.axes_style("ticks"), matplotlib.rc_context(RC), warnings.catch_warnings():
        # seaborn 0.13's boxplot still passes matplotlib's deprecated `vert`: its business, not the reader's
        warnings.filterwarnings("ignore", message=".*vert: bool was deprecated.*")
        yield


def new_figure(n_panels: int, n_rows: int = 1, panel_in: float = PANEL_IN,
               extra_width_in: float = 0.0) -> tuple[Figure, np.ndarray]:
    """A Figure with n_rows x n_panels axes (always a 2-D array) sized for print."""
    fig = Figure(figsize=(panel_in * n_panels + extra_width_in, panel_in * n_rows), layout="constrained")
    axes = fig.subplots(n_rows, n_panels, squeeze=False)
    return fig, axes


def save(fig: Figure, out_dir: str, name: str, formats: Sequence[str] = FORMATS) -> list[str]:
    """Write `<out_dir>/<name>.<fmt>` for each format; return the paths."""
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    with paper_style():
        for fmt in formats:
            path = os.path.join(out_dir, f"{name}.{fmt}")
            fig.savefig(path, format=fmt)
            paths.append(path)
    return paths


def message_figure(text: str, title: str = "") -> Figure:
    """A small figure that only says why there is nothing to plot."""
    fig = Figure(figsize=(PANEL_IN * 1.6, PANEL_IN * 0.6), layout="constrained")
    ax = fig.subplots()
    ax.axis("off")
    if title:
        ax.set_title(title)
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True, transform=ax.transAxes)
    return fig


def spans_decades(values: pd.Series | np.ndarray, decades: float = 2.0) -> bool:
    """True if all values are positive and max/min is at least 10**decades (then use a log axis)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    return len(v) > 1 and bool((v > 0).all()) and math.log10(v.max() / v.min()) >= decades


def set_count_scale(ax: Axes, axis: str, values: pd.Series | np.ndarray) -> None:
    """Log scale for a positive quantity; symlog (linear below 1) when it contains zeros."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    setter = ax.set_xscale if axis == "x" else ax.set_yscale
    if len(v) and (v <= 0).any():  # counts with zeros: linear in [0, 1], log above
        setter("symlog", linthresh=1.0, linscale=0.5)
        (ax.set_xlim if axis == "x" else ax.set_ylim)(-0.3, max(float(v.max()), 1.0) * 1.5)
        (ax.xaxis if axis == "x" else ax.yaxis).set_major_formatter(ticker.FuncFormatter(tick_text))
    else:
        setter("log")
        tidy_log_axis(ax, axis, v)


def set_gap_scale(ax: Axes, axis: str, values: pd.Series | np.ndarray) -> None:
    """Log scale for a loss gap, so that a few nets at 40+ nats do not squash the rest; symlog when
    some gaps are <= 0 (test loss at or below train loss): linear within a power of ten near the
    tenth percentile of |gap| (clipped to [0.01, 1]), log beyond, with signed tick labels."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    setter = ax.set_xscale if axis == "x" else ax.set_yscale
    if not len(v) or (v > 0).all():
        setter("log")
        tidy_log_axis(ax, axis, v)
        return
    magnitudes = np.abs(v[v != 0])
    small = float(np.quantile(magnitudes, 0.1)) if len(magnitudes) else 1.0
    setter("symlog", linthresh=10.0 ** float(np.clip(np.round(np.log10(small)), -2, 0)), linscale=1.0)
    (ax.xaxis if axis == "x" else ax.yaxis).set_major_formatter(ticker.FuncFormatter(signed_tick_text))


def signed_tick_text(value: float, _position: object = None) -> str:
    """`tick_text` for either sign: −10, 0, 10 (for symlog axes that cross zero)."""
    return "0" if value == 0 else tick_text(value) if value > 0 else "−" + tick_text(-value)


def tick_text(value: float, _position: object = None) -> str:
    """0.01 ... 1000 in plain digits, powers of ten beyond as 10^k, other values as 2e-05."""
    if value <= 0:
        return "0"
    exponent = math.log10(value)
    if -2 <= exponent < 4:
        return f"{value:g}"
    if abs(exponent - round(exponent)) < 1e-9:
        return rf"$10^{{{int(round(exponent))}}}$"
    return f"{value:.0e}"


def tidy_log_axis(ax: Axes, axis: str, values: np.ndarray) -> None:
    """Short tick labels on a log axis. Data spanning few decades get labelled minor ticks too
    (at 2 and 5 under 1.5 decades, at 3 under 2.5), so that every axis has at least ~3 labels."""
    target = ax.xaxis if axis == "x" else ax.yaxis
    target.set_major_formatter(ticker.FuncFormatter(tick_text))
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values) & (values > 0)]
    span = math.log10(values.max() / values.min()) if len(values) else float("inf")
    subs = (2.0, 5.0) if span < 1.5 else (3.0,) if span < 2.5 else None
    if subs:
        target.set_minor_locator(ticker.LogLocator(subs=subs))
        target.set_minor_formatter(ticker.FuncFormatter(tick_text))
    else:
        target.set_minor_formatter(ticker.NullFormatter())


def dataset_order(frame: pd.DataFrame, column: str = "hp.dataset") -> list[str]:
    """The data sets present, sorted, as the panel order."""
    if column not in frame.columns:
        return []
    return sorted(frame[column].dropna().astype(str).unique())


def factor_palette(values: Sequence) -> dict:
    """One color per level of a categorical factor (sorted levels, colorblind palette)."""
    levels = sorted(pd.unique(pd.Series(list(values)).dropna()), key=lambda v: (str(type(v)), v))
    colors = sns.color_palette("colorblind", max(len(levels), 1))
    return {level: colors[i % len(colors)] for i, level in enumerate(levels)}
