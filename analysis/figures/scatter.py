"""Figures 1 and 2: one point per trained net, a panel per data set.

Figure 1: test Jacobian norm vs the generalization gap chosen by `gap` (the accuracy gap, i.e. the
test error, by default; the loss gap on a log / symlog axis), true-label nets as filled and
random-label nets as open markers (analysis.strata), each panel stating Spearman's rho over all nets
and over the true-label nets alone. Figure 2: transitions vs loss gap (top row) and transitions vs
number of hidden neurons (bottom row). Each panel states n and Spearman's rho of what it shows (the
report's statistics module gives the bootstrap intervals).
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
                                    paper_style, save, set_count_scale, set_gap_scale, spans_decades)
from analysis.strata import gap_column, label_mask

JACOBIAN = "measure.jacobian_test"
TRANSITIONS = "measure.transitions_test"
GAP = "gap.loss"  # figure 2's gap
NEURONS = "model.n_neurons"
POPULATIONS = {  # figure 1's marker per label stratum: (legend text, marker, filled)
    "true": ("true labels", "o", True), "random": ("random labels", "o", False), "unknown": ("labels unknown", "x", True)}


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

    def add_key(self, fig: Figure, axes: np.ndarray, loc: str = "outside right center") -> None:
        title = label(self.column)
        if self.palette is not None:
            handles = [Line2D([], [], marker="o", linestyle="", markersize=4, color=color, label=str(level))
                       for level, color in self.palette.items()]
            fig.legend(handles=handles, title=title, loc=loc, frameon=False)
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


def populations(frame: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The rows of true-label, random-label and unknown-label nets (analysis.strata.label_mask)."""
    true, random = label_mask(frame, "true"), label_mask(frame, "random")
    return {"true": frame[true], "random": frame[random], "unknown": frame[~true & ~random]}


def _spearman(frame: pd.DataFrame, x: str, y: str) -> str:
    """"n = .., ρ = .." of the rows of `frame` (ρ only with 3 or more rows that vary in both)."""
    if len(frame) >= 3 and frame[x].nunique() > 1 and frame[y].nunique() > 1:
        return f"n = {len(frame)}, ρ = {stats.spearmanr(frame[x], frame[y]).statistic:.2f}".replace("-", "−")
    return f"n = {len(frame)}"


def jacobian_panel(ax: Axes, frame: pd.DataFrame, target: str, hue: HueMap | None) -> str:
    """Figure 1's panel: J (log x) vs `target`, one marker style per label population (POPULATIONS);
    returns "n = .., Spearman ρ = .. (all)" and "true labels: n = .., ρ = .." (the panel title)."""
    frame = frame.dropna(subset=[JACOBIAN, target])
    frame = frame[frame[JACOBIAN] >= 0]
    ax.set_xlabel(label(JACOBIAN))
    ax.set_ylabel(label(target))
    if not len(frame):
        ax.text(0.5, 0.5, "not measured\nfor these nets", ha="center", va="center", transform=ax.transAxes)
        return "n = 0"
    groups = populations(frame)
    for name, part in groups.items():
        if not len(part):
            continue
        colors = hue.colors(part[hue.column]) if hue is not None else ["C0"] * len(part)
        text, marker, filled = POPULATIONS[name]
        style = dict(c=colors, linewidths=0) if filled and marker == "o" else \
            dict(c=colors, linewidths=0.7) if filled else dict(facecolors="none", edgecolors=colors, linewidths=0.7)
        ax.scatter(part[JACOBIAN], part[target], marker=marker, s=9 if filled else 11, alpha=0.8, label=text,
                   rasterized=len(frame) > 2000, **style)
    set_count_scale(ax, "x", frame[JACOBIAN])
    if target == "gap.loss":
        set_gap_scale(ax, "y", frame[target])
    pooled = _spearman(frame, JACOBIAN, target).replace("ρ", "Spearman ρ")
    return f"{pooled} (all)\ntrue labels: {_spearman(groups['true'], JACOBIAN, target)}"


@paper_style()
def draw_jacobian_vs_gap(trials: pd.DataFrame, hue: str | None = "hp.nonlinearity", gap: str = "accuracy") -> Figure:
    target = gap_column(gap)
    title = f"Jacobian norm vs generalization gap ({target}), one point per net;\n{J_DEFINITION}"
    missing = sorted({JACOBIAN, target} - set(trials.columns))
    usable = trials.iloc[:0] if missing else trials.dropna(subset=[JACOBIAN, target], how="all")
    datasets = dataset_order(usable)
    if not datasets:
        why = f"columns missing: {', '.join(missing)}" if missing else "no trials with these measures"
        return message_figure(f"Nothing to plot: {why}.", title)
    hue_map = HueMap.of(usable, hue)
    fig, axes = new_figure(len(datasets), 1, extra_width_in=1.0)
    fig.set_figheight(fig.get_figheight() + 0.45)  # room for the labels legend below the panels
    for c, name in enumerate(datasets):
        note = jacobian_panel(axes[0, c], usable[usable["hp.dataset"].astype(str) == name], target, hue_map)
        axes[0, c].set_title(f"{name}\n{note}")
    present = [name for name, part in populations(usable.dropna(subset=[JACOBIAN, target])).items() if len(part)]
    if hue_map is not None:
        hue_map.add_key(fig, axes)
    handles = [Line2D([], [], marker=POPULATIONS[p][1], linestyle="", markersize=4, color="0.3",
                      markerfacecolor="0.3" if POPULATIONS[p][2] else "none", label=POPULATIONS[p][0])
               for p in present]
    fig.legend(handles=handles, title="training labels", loc="outside lower center", ncols=len(handles), frameon=False)
    fig.suptitle(title)
    return fig


def fig1_jacobian_vs_gap(trials: pd.DataFrame, out_dir: str, hue: str | None = "hp.nonlinearity",
                         gap: str = "accuracy") -> list[str]:
    """Figure 1: mean test Jacobian norm (log x) vs the gap `gap` (y: "accuracy" -> gap.accuracy, linear;
    "loss" -> gap.loss, log or symlog), a panel per data set, colored by `hue`, true-label nets filled
    and random-label nets open; each panel title gives Spearman's rho over all and over true-label nets.

    Writes fig1_jacobian_vs_gap.{png,pdf}; returns their paths."""
    return save(draw_jacobian_vs_gap(trials, hue, gap), out_dir, "fig1_jacobian_vs_gap")


@paper_style()
def draw_transitions(trials: pd.DataFrame, hue: str | None = "hp.nonlinearity") -> Figure:
    return draw_measure_vs(trials, [(TRANSITIONS, GAP, True, None), (NEURONS, TRANSITIONS, True, True)], hue,
                           "Transitions (activation-pattern changes along\nellipses through test points) vs gap (top)\n"
                           "and vs network size (bottom)")


def fig2_transitions(trials: pd.DataFrame, out_dir: str, hue: str | None = "hp.nonlinearity") -> list[str]:
    """Figure 2: transitions (log x) vs loss gap, and hidden neurons vs transitions (log-log), per data set.

    Writes fig2_transitions.{png,pdf}; returns their paths."""
    return save(draw_transitions(trials, hue), out_dir, "fig2_transitions")
