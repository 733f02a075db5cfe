"""Figures 1 and 2: one point per trained net, a panel per data set.

Figure 1: test Jacobian norm vs generalization gap. Figure 2: transitions vs gap (top row) and
transitions vs number of hidden neurons (bottom row). Each panel states n and Spearman's rho of
what it shows (the report's statistics module gives the bootstrap intervals).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from scipy import stats

from analysis.figures.style import (J_DEFINITION, dataset_order, factor_palette, label, message_figure, new_figure,
                                    paper_style, save, set_count_scale, spans_decades)

JACOBIAN = "measure.jacobian_test"
TRANSITIONS = "measure.transitions_test"
GAP = "gap.loss"
NEURONS = "model.n_neurons"


@dataclass
class HueMap:
    """Colors for a factor: a legend for few levels, a colorbar (log if it spans decades) for many numbers."""

    column: str
    palette: dict | None = None
    norm: Normalize | None = None
    cmap: str = "viridis"

    @classmethod
    def of(cls, trials: pd.DataFrame, column: str | None) -> "HueMap | None":
        if not column or column not in trials.columns or trials[column].isna().all():
            return None
        values = trials[column].dropna()
        if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values) and values.nunique() > 8:
            lo, hi = float(values.min()), float(values.max())
            return cls(column, norm=LogNorm(lo, hi) if spans_decades(values, 1.0) else Normalize(lo, hi))
        return cls(column, palette=factor_palette(values))

    def colors(self, values: pd.Series):
        if self.palette is not None:
            return [self.palette.get(v, (0.5, 0.5, 0.5)) for v in values]
        import matplotlib

        return matplotlib.colormaps[self.cmap](self.norm(values.astype(float).to_numpy()))

    def add_key(self, fig: Figure, axes: np.ndarray) -> None:
        title = label(self.column)
        if self.palette is not None:
            handles = [Line2D([], [], marker="o", linestyle="", markersize=4, color=color, label=str(level))
                       for level, color in self.palette.items()]
            fig.legend(handles=handles, title=title, loc="outside right center", frameon=False)
        else:
            from matplotlib.cm import ScalarMappable

            fig.colorbar(ScalarMappable(self.norm, self.cmap), ax=list(axes.ravel()), label=title, shrink=0.8)


def scatter_panel(ax: Axes, frame: pd.DataFrame, x: str, y: str, hue: HueMap | None,
                  log_x: bool = True, log_y: bool | None = None) -> str:
    """Scatter y against x on `ax`; returns "n = .., Spearman ρ = .." of what was drawn (for the title).

    log_x/log_y: True = log (symlog if zeros), False = linear, None = log only if the data span
    two decades. Rows with a missing x or y are left out (and counted out of n)."""
    frame = frame.dropna(subset=[x, y])
    if log_x and (frame[x] < 0).any():
        frame = frame[frame[x] >= 0]
    if not len(frame):
        ax.text(0.5, 0.5, "not measured\nfor these nets", ha="center", va="center", transform=ax.transAxes)
        ax.set_xlabel(label(x))
        ax.set_ylabel(label(y))
        return "n = 0"
    colors = hue.colors(frame[hue.column]) if hue is not None else "C0"
    ax.scatter(frame[x], frame[y], c=colors, s=9, alpha=0.75, linewidths=0, rasterized=len(frame) > 2000)
    ax.set_xlabel(label(x))
    ax.set_ylabel(label(y))
    if log_x:
        set_count_scale(ax, "x", frame[x])
    if log_y or (log_y is None and spans_decades(frame[y])):
        set_count_scale(ax, "y", frame[y])
    if len(frame) >= 3 and frame[x].nunique() > 1 and frame[y].nunique() > 1:
        rho = stats.spearmanr(frame[x], frame[y]).statistic
        return f"n = {len(frame)}, Spearman ρ = {rho:.2f}".replace("-", "−")
    return f"n = {len(frame)}"


@paper_style()
def draw_measure_vs(trials: pd.DataFrame, rows: list[tuple[str, str, bool, bool | None]],
                    hue: str | None, title: str) -> Figure:
    """A grid: one row per (x, y, log_x, log_y), one column per data set."""
    needed = {c for x, y, _, _ in rows for c in (x, y)}
    missing = sorted(needed - set(trials.columns))
    usable = trials.dropna(subset=sorted(needed & set(trials.columns)), how="all") if not missing else trials.iloc[:0]
    datasets = dataset_order(usable)
    if not datasets:
        why = f"columns missing: {', '.join(missing)}" if missing else "no trials with these measures"
        return message_figure(f"Nothing to plot: {why}.", title)
    hue_map = HueMap.of(usable, hue)
    fig, axes = new_figure(len(datasets), len(rows), extra_width_in=1.0 if hue_map else 0.0)
    for r, (x, y, log_x, log_y) in enumerate(rows):
        for c, name in enumerate(datasets):
            ax = axes[r, c]
            note = scatter_panel(ax, usable[usable["hp.dataset"].astype(str) == name], x, y, hue_map, log_x, log_y)
            ax.set_title(f"{name}\n{note}")
    if hue_map is not None:
        hue_map.add_key(fig, axes)
    fig.suptitle(title)
    return fig


@paper_style()
def draw_jacobian_vs_gap(trials: pd.DataFrame, hue: str | None = "hp.nonlinearity") -> Figure:
    return draw_measure_vs(trials, [(JACOBIAN, GAP, True, None)], hue,
                           f"Jacobian norm vs generalization gap, one point per net;\n{J_DEFINITION}")


def fig1_jacobian_vs_gap(trials: pd.DataFrame, out_dir: str, hue: str | None = "hp.nonlinearity") -> list[str]:
    """Figure 1: mean test Jacobian norm (log x) vs loss gap (y), a panel per data set, colored by `hue`.

    Writes fig1_jacobian_vs_gap.{png,pdf}; returns their paths."""
    return save(draw_jacobian_vs_gap(trials, hue), out_dir, "fig1_jacobian_vs_gap")


@paper_style()
def draw_transitions(trials: pd.DataFrame, hue: str | None = "hp.nonlinearity") -> Figure:
    return draw_measure_vs(trials, [(TRANSITIONS, GAP, True, None), (NEURONS, TRANSITIONS, True, True)], hue,
                           "Transitions (activation-pattern changes along\nellipses through test points) vs gap (top)\n"
                           "and vs network size (bottom)")


def fig2_transitions(trials: pd.DataFrame, out_dir: str, hue: str | None = "hp.nonlinearity") -> list[str]:
    """Figure 2: transitions (log x) vs loss gap, and hidden neurons vs transitions (log-log), per data set.

    Writes fig2_transitions.{png,pdf}; returns their paths."""
    return save(draw_transitions(trials, hue), out_dir, "fig2_transitions")
