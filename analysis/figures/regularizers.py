"""Figure 7: regularizers as interventions. Within pairs (a regularized net and its unregularized
twin, `analysis.intervention.regularizer_pairs`), how did the gap move against each Jacobian?

One column per regularizer. Row 1: change of the loss gap vs the ratio of the softmax Jacobian
(the study's measure), regularized / unregularized; row 2: the same against the logit Jacobian;
both rows share their x-range, so a penalty that moves the two Jacobians apart is seen at a
glance. Row 3: test accuracy against the regularizer's strength (log x), with the unregularized
twins' accuracy as a dashed line. Shade: strength (darker = stronger); marker: data set; the large
marker with bars is each strength's median ratio and mean gap change with their 95% bootstrap CIs.
"""

from __future__ import annotations

import math
import textwrap

import numpy as np
import pandas as pd
from matplotlib import ticker
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from analysis.figures.style import (factor_palette, message_figure, new_figure, paper_style, save, tick_text,
                                    tidy_log_axis)
from analysis.intervention import intervention_effects, method_key, regularizer_pairs, strength_column

MARKERS = ("o", "s", "^", "D", "v", "P", "X")
RATIO_ROWS = (("log_ratio_jacobian", "softmax_log_ratio", r"softmax Jacobian $\|\partial p/\partial x\|_F$"),
              ("log_ratio_logit_jacobian", "logit_log_ratio", r"logit Jacobian $\|\partial h/\partial x\|_F$"))
STRENGTH_LABELS = {"reg_strength": r"strength $\lambda$ (reg_strength)", "noise_std": r"noise std $\sigma$ (noise_std)"}
TITLE = "Figure 7: regularizers"


def _shades(color: tuple, n: int) -> list[tuple]:
    """n shades of `color` from light (weakest setting) to the full color (strongest)."""
    weights = [1.0] if n == 1 else np.linspace(0.4, 1.0, n)
    return [tuple(1 - w * (1 - c) for c in color[:3]) for w in weights]


def _ratio_limits(pairs: pd.DataFrame, effects: pd.DataFrame) -> tuple[float, float]:
    """x-range (ratios) covering both Jacobians' points and CIs, and 1, with a margin in log space."""
    logs = [pairs[c] for c, _, _ in RATIO_ROWS]
    logs += [effects[f"{s}{end}"] for _, s, _ in RATIO_ROWS for end in ("_lo", "_hi")]
    values = pd.concat(logs).to_numpy(dtype=float)
    values = values[np.isfinite(values)]
    lo, hi = min(0.0, values.min(initial=0.0)), max(0.0, values.max(initial=0.0))
    pad = max(0.1 * (hi - lo), 0.05)
    return math.exp(lo - pad), math.exp(hi + pad)


RATIO_TICKS = (  # candidate tick sets for ratio axes, fine to coarse
    (0.5, 0.6, 0.7, 0.8, 0.9, 1, 1.1, 1.2, 1.3, 1.5, 1.7, 2),
    (0.1, 0.2, 0.3, 0.5, 0.7, 1, 1.5, 2, 3, 5, 7, 10),
    (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100),
)


def _ratio_ticks(ax: Axes, lo: float, hi: float) -> None:
    """Plain-number ticks on a log ratio axis: the finest candidate set giving 2-7 ticks in
    [lo, hi] (1 is in every set and in every range), else every k-th tick of the finest set."""
    ticks = None
    for candidates in RATIO_TICKS:
        inside = [t for t in candidates if lo <= t <= hi]
        if 2 <= len(inside) <= 7:
            ticks = inside
            break
    if ticks is None:  # a wide range: powers of ten, thinned to at most 7
        decades = [10.0 ** k for k in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
                   if lo <= 10.0 ** k <= hi]
        step = max(1, math.ceil(len(decades) / 7))
        ticks = [t for t in decades if round(math.log10(t)) % step == 0] or [1.0]
    ax.xaxis.set_major_locator(ticker.FixedLocator(ticks))
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(tick_text))
    ax.xaxis.set_minor_locator(ticker.NullLocator())


def _summary_point(ax: Axes, row: pd.Series, stat: str, color: tuple) -> None:
    """Median ratio (x) and mean gap change (y) of one strength, with their CIs as bars."""
    x, y = math.exp(row[stat]), row["d_gap_loss"]
    if not (np.isfinite(x) and np.isfinite(y)):
        return
    xerr = [[x - math.exp(row[f"{stat}_lo"])], [math.exp(row[f"{stat}_hi"]) - x]] \
        if np.isfinite(row[f"{stat}_lo"]) else None
    yerr = [[y - row["d_gap_loss_lo"]], [row["d_gap_loss_hi"] - y]] if np.isfinite(row["d_gap_loss_lo"]) else None
    ax.errorbar([x], [y], xerr=xerr, yerr=yerr, fmt="o", markersize=6, color=color, markeredgecolor="black",
                markeredgewidth=0.7, ecolor="black", elinewidth=0.8, capsize=2, zorder=4)


def _ratio_panel(ax: Axes, pairs: pd.DataFrame, effects: pd.DataFrame, column: str, stat: str,
                 shades: dict, markers: dict, xlim: tuple[float, float]) -> None:
    for (setting, dataset), group in pairs.groupby(["setting", "dataset"], sort=True):
        ax.scatter(np.exp(group[column]), group["d_gap_loss"], s=14, color=shades[setting], marker=markers[dataset],
                   alpha=0.85, linewidths=0.3, edgecolors="0.3", zorder=3)
    for _, row in effects.iterrows():
        _summary_point(ax, row, stat, shades[row["setting"]])
    if not np.isfinite(pairs[column].to_numpy(dtype=float)).any():
        ax.text(0.5, 0.5, "not measured for these nets", ha="center", va="center", transform=ax.transAxes)
    ax.axvline(1.0, color="0.4", linewidth=0.6, linestyle=":", zorder=1)
    ax.axhline(0.0, color="0.4", linewidth=0.6, linestyle=":", zorder=1)
    ax.set_xscale("log")
    ax.set_xlim(*xlim)
    _ratio_ticks(ax, *xlim)


def _gap_limits(ax: Axes, pairs: pd.DataFrame, effects: pd.DataFrame) -> None:
    """y-range of the gap rows: the points, the CIs and 0 (the no-change line), with a margin."""
    values = pd.concat([pairs["d_gap_loss"], effects["d_gap_loss_lo"], effects["d_gap_loss_hi"]]).to_numpy(dtype=float)
    values = values[np.isfinite(values)]
    lo, hi = min(0.0, values.min(initial=0.0)), max(0.0, values.max(initial=0.0))
    pad = 0.08 * (hi - lo) or 0.01
    ax.set_ylim(lo - pad, hi + pad)


def _accuracy_panel(ax: Axes, pairs: pd.DataFrame, shades: dict, markers: dict, strength: str) -> None:
    for dataset, group in pairs.groupby("dataset", sort=True):
        means = group.groupby("strength")["test_accuracy"].mean()
        ax.plot(means.index, means.to_numpy(), color="0.35", linewidth=0.8, zorder=2)
        for setting, sub in group.groupby("setting", sort=True):
            ax.scatter(sub["strength"], sub["test_accuracy"], s=14, color=shades[setting], marker=markers[dataset],
                       linewidths=0.3, edgecolors="0.3", zorder=3)
        base = group.drop_duplicates("baseline_id")["test_accuracy_base"].mean()
        if np.isfinite(base):
            ax.axhline(base, color="0.2", linewidth=0.8, linestyle="--", zorder=1)
            if pairs["dataset"].nunique() > 1:
                ax.annotate(dataset, (1.0, base), xycoords=("axes fraction", "data"), fontsize=6, ha="right",
                            va="bottom", color="0.2")
    values = pairs["strength"].to_numpy(dtype=float)
    ax.set_xscale("log")
    lo, hi = values.min(), values.max()
    ax.set_xlim(lo / 2, hi * 2)
    tidy_log_axis(ax, "x", np.array([lo / 2, hi * 2]))
    ax.set_xlabel(STRENGTH_LABELS[strength])


@paper_style()
def draw_regularizers(trials: pd.DataFrame, n_boot: int = 1000, seed: int = 0) -> Figure:
    pairs = regularizer_pairs(trials)
    if not len(pairs):
        n_reg = pairs.attrs.get("n_regularized", 0)
        why = ("No regularized trials among these trials (hp.regularizer is 'none' throughout):\nno intervention "
               "to show." if not n_reg else
               f"{n_reg} regularized trial(s), none with an unregularized twin\n(the same config with "
               "regularizer=none): no pairs to compare.")
        return message_figure(why, TITLE)
    effects = intervention_effects(pairs, n_boot=n_boot, seed=seed)
    methods = sorted(pairs["method"].unique(), key=method_key)
    colors = factor_palette(methods)
    datasets = sorted(pairs["dataset"].unique())
    markers = {d: MARKERS[i % len(MARKERS)] for i, d in enumerate(datasets)}
    fig, axes = new_figure(len(methods), 3, panel_in=2.3)
    fig.set_figheight(2.3 * 3 + 0.5)
    for c, method in enumerate(methods):
        group = pairs[pairs["method"] == method]
        strengths = effects[(effects["method"] == method) & (effects["level"] == "strength")]
        settings = list(strengths["setting"])
        shades = dict(zip(settings, _shades(colors[method], len(settings))))
        xlim = _ratio_limits(group, strengths)
        for r, (column, stat, name) in enumerate(RATIO_ROWS):
            ax = axes[r, c]
            _ratio_panel(ax, group, strengths, column, stat, shades, markers, xlim)
            ax.set_xlabel(f"{name}\nratio regularized / unregularized")
            if r:
                ax.sharey(axes[0, c])
        pooled = effects[(effects["method"] == method) & (effects["level"] == "regularizer")].iloc[0]
        rho = (f"\nSpearman ρ(ΔJ softmax, Δgap) =\n{pooled['spearman']:.2f} [{pooled['spearman_lo']:.2f}, "
               f"{pooled['spearman_hi']:.2f}]".replace("-", "−") if np.isfinite(pooled["spearman"]) else "")
        axes[0, c].set_title(f"{method}\n{len(group)} pairs, {group['baseline_id'].nunique()} unregularized twins{rho}")
        _gap_limits(axes[0, c], group, strengths)
        _accuracy_panel(axes[2, c], group, shades, markers, strength_column(str(group["regularizer"].iloc[0])))
        handles = [Line2D([], [], marker="o", linestyle="", markersize=4, color=shades[s], label=s) for s in settings]
        axes[0, c].legend(handles=handles, loc="best", fontsize=6, handletextpad=0.2, frameon=True, framealpha=0.85,
                          edgecolor="none")
    for r, text in enumerate(("Δ loss gap (nats)\nregularized − unregularized",) * 2 + ("test accuracy",)):
        axes[r, 0].set_ylabel(text)
    key = [Line2D([], [], marker="o", markersize=6, color="0.8", markeredgecolor="black", linestyle="",
                  label="per strength: median ratio, mean Δgap, 95% CI"),
           Line2D([], [], color="0.2", linestyle="--", label="unregularized twins (mean test accuracy)")]
    if len(datasets) > 1:
        key += [Line2D([], [], marker=markers[d], linestyle="", color="0.4", markersize=4, label=d) for d in datasets]
    ncol = 1 if len(methods) == 1 else 2 if len(methods) <= 3 else len(key)
    fig.legend(handles=key, loc="outside lower center", ncol=ncol, frameon=False)
    title = ("Regularized nets vs their unregularized twins: Δ loss gap against the ratio of each Jacobian "
             "(rows 1-2; dotted: no change), test accuracy against strength (row 3)")
    fig.suptitle(textwrap.fill(title, width=int(45 * len(methods))))
    return fig




def fig7_regularizers(trials: pd.DataFrame, out_dir: str, n_boot: int = 1000, seed: int = 0) -> list[str]:
    """Figure 7: per regularizer, Δgap vs the softmax and the logit Jacobian ratio within pairs, and
    test accuracy vs strength. With no regularized trials or no matched pairs it writes a figure that
    says so (never returns []). Writes fig7_regularizers.{png,pdf}; returns their paths."""
    return save(draw_regularizers(trials, n_boot=n_boot, seed=seed), out_dir, "fig7_regularizers")
