"""The ranking figure: every measure (rows) by every criterion of analysis.ranking (panels), one row of panels
per target, so the Jacobian norm can be read against the field's measures on the same nets.

Panels: Spearman rho with its 95% bootstrap CI (filled: true-label nets; open: every net), Psi, the CMI score
K, the robust sign error (filled: the mean over environments; open: the worst one; dashed: a coin's 0.5).
Each row of panels (a data set and a target) sorts the measures by their true-label Spearman rho against that
target, best on top; the Jacobian norms'
rows are drawn in the accent color. A criterion with no value for a measure leaves its row empty there.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from analysis.figures.style import label, message_figure, paper_style, save
from analysis.ranking import ranking_table

ACCENT, PLAIN = "#c0392b", "#34495e"
PANELS = (("spearman", "Spearman ρ (CI 95%)"), ("psi", "granulated Kendall Ψ"), ("cmi", "CMI score K"),
          ("rse", "robust sign error"))
TARGET_NAMES = {"gap.accuracy": "accuracy gap (test error)", "gap.loss": "loss gap"}


def _is_jacobian(measure: str) -> bool:
    return measure.startswith("measure.jacobian")


UNDEFINED = "undefined here: no trials\ndiffer in one axis only\n(sensitivity sweep grid)"


def _panel(ax, rows: pd.DataFrame, panel: str, ypos: np.ndarray) -> None:
    column = {"spearman": "spearman_all", "rse": "rse_mean"}.get(panel, panel)
    if not rows[column].notna().any():  # Psi and the sign error need groups that differ in one axis
        ax.text(0.5, 0.5, UNDEFINED, ha="center", va="center", transform=ax.transAxes, color="0.35")
    colors = [ACCENT if _is_jacobian(m) else PLAIN for m in rows["measure"]]
    if panel == "spearman":
        for column, filled in (("spearman_all", False), ("spearman_true", True)):
            lo, hi, mid = (rows[f"{column}{s}"].to_numpy(float) for s in ("_lo", "_hi", ""))
            shift = 0.15 if filled else -0.15
            ax.hlines(ypos + shift, lo, hi, colors=colors, linewidth=0.8)
            ax.scatter(mid, ypos + shift, s=14, c=colors if filled else "none", edgecolors=colors, linewidths=0.8,
                       zorder=3, label="true labels" if filled else "all nets")
        ax.axvline(0, color="0.6", linewidth=0.6)
        ax.set_xlim(-1.05, 1.05)
    elif panel == "rse":
        for column, filled in (("rse_worst", False), ("rse_mean", True)):
            ax.scatter(rows[column].to_numpy(float), ypos, s=14, c=colors if filled else "none", edgecolors=colors,
                       linewidths=0.8, zorder=3, label="mean" if filled else "worst")
        ax.axvline(0.5, color="0.6", linewidth=0.6, linestyle="--")
        ax.set_xlim(-0.03, 1.03)
    else:
        values = rows[panel].to_numpy(float)
        ax.hlines(ypos, 0, values, colors=colors, linewidth=1.5)
        ax.scatter(values, ypos, s=14, c=colors, zorder=3)
        ax.axvline(0, color="0.6", linewidth=0.6)
        if panel == "psi":
            ax.set_xlim(-1.05, 1.05)
    ax.grid(axis="x", color="0.92", linewidth=0.5)


@paper_style()
def draw_ranking(table: pd.DataFrame) -> Figure:
    """The figure of an analysis.ranking.ranking_table: a row of panels per (group, target), one under the other,
    each sorting the measures by its own true-label rho."""
    if not len(table):
        return message_figure("No ranking: no measure with two distinct values among the kept nets.")
    blocks = []  # (group, target, its rows sorted)
    for (group, target), rows in table.groupby(["group", "target"], sort=False):
        blocks.append((group, target, rows.sort_values(["spearman_true", "spearman_all"], ascending=True,
                                                      na_position="first", ignore_index=True)))
    n_rows = max(len(rows) for *_, rows in blocks)
    fig = Figure(figsize=(2.0 * len(PANELS) + 1.6, len(blocks) * (0.5 + 0.17 * n_rows)), layout="constrained")
    axes = fig.subplots(len(blocks), len(PANELS), squeeze=False)
    for r, (group, target, rows) in enumerate(blocks):
        ypos = np.arange(len(rows), dtype=float)
        for c, (panel, title) in enumerate(PANELS):
            ax = axes[r, c]
            _panel(ax, rows, panel, ypos)
            ax.set_ylim(-0.6, len(rows) - 0.4)
            ax.set_yticks(ypos, [label(m) for m in rows["measure"]] if c == 0 else [])
            if r == 0:
                ax.set_title(title)
            if c == 0:
                n_true = int(rows["n_true"].max())
                ax.set_ylabel(f"{group}: {TARGET_NAMES.get(target, target)}\n"
                              f"{int(rows['n_all'].max())} nets, {n_true} true-label")
                for tick, measure in zip(ax.get_yticklabels(), rows["measure"]):
                    if _is_jacobian(measure):
                        tick.set_color(ACCENT)
                        tick.set_fontweight("bold")
    def marker(filled: bool) -> Line2D:
        return Line2D([], [], marker="o", linestyle="none", markersize=4, markeredgecolor=PLAIN,
                      markerfacecolor=PLAIN if filled else "none")
    fig.legend([marker(True), marker(False), marker(True), marker(False)],
               ["ρ over the true-label nets", "ρ over every net", "sign error: mean over environments",
                "sign error: worst environment"], loc="outside lower center", ncol=4, frameon=False)
    fig.suptitle("Measures ranked against the gap (Ψ, K and sign error over the true-label nets)")
    return fig


def fig8_ranking(trials: pd.DataFrame, out_dir: str, table: pd.DataFrame | None = None,
                 n_boot: int = 1000) -> list[str]:
    """Figure 8 (fig8_ranking.png/.pdf) from the kept trials, or from a ranking_table already computed."""
    table = ranking_table(trials, n_boot=n_boot) if table is None else table
    return save(draw_ranking(table), out_dir, "fig8_ranking")
