"""Figure 4: paired nets. Two nets identical but for one binary factor (rows sharing `pair_id`,
the factor named in `pair.factor`): how much do the gap, the Jacobian norm and the transitions move
when that factor flips? (docs/science.md section 1, "Paired factors".)

Each pair is oriented from its reference member to the other: False -> True, the smaller number
first, and for a nonlinearity ReLU first (else alphabetical). The gap (`gap`: the accuracy gap, i.e.
the test error, by default, or the loss gap in nats) is compared as a difference, the Jacobian norm
and transitions as a ratio (log axis), since they span decades; the "pairs moving with the gap"
counts compare their direction with that of the chosen gap.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from analysis.figures.style import (factor_palette, label, message_figure, new_figure, paper_style, save,
                                    tidy_log_axis)
from analysis.strata import gap_column

QUANTITIES = (  # column, how a pair's change is expressed (pair_differences has all; the figure one gap)
    ("gap.accuracy", "difference"),
    ("gap.loss", "difference"),
    ("measure.jacobian_test", "ratio"),
    ("measure.transitions_test", "ratio"),
)
GAP_COLUMNS = ("gap.accuracy", "gap.loss")
SHORT_NAMES = {"gap.accuracy": "accuracy gap (test error)", "gap.loss": "loss gap (nats)",
               "measure.jacobian_test": r"test Jacobian norm $\|J\|_F$",
               "measure.transitions_test": "transitions (test ellipses)"}


def _reference_key(value: object) -> tuple:
    """Sort key that puts a pair's reference member first (False, smaller numbers, ReLU)."""
    if isinstance(value, (bool, np.bool_)):
        return (0, int(value), "")
    if isinstance(value, (int, float, np.integer, np.floating)):
        return (0, float(value), "")
    return (1, 0 if value == "relu" else 1, str(value))


def pair_differences(trials: pd.DataFrame) -> pd.DataFrame:
    """One row per complete pair: pair_id, factor, contrast ("augment: False → True"), dataset, and
    for each QUANTITY its `<col>.before`, `<col>.after` and `<col>.change` (after − before, or
    after / before for ratios). Pairs without exactly two members are left out."""
    columns = ["pair_id", "factor", "contrast", "dataset"]
    if not {"pair_id", "pair.factor"} <= set(trials.columns):
        return pd.DataFrame(columns=columns)
    paired = trials.dropna(subset=["pair_id", "pair.factor"])
    rows = []
    for pair_id, members in paired.groupby("pair_id", sort=True):
        if len(members) != 2:
            continue
        factor = str(members["pair.factor"].iloc[0])
        column = f"hp.{factor}"
        if column in members.columns and members[column].nunique() == 2:
            order = sorted(range(2), key=lambda i: _reference_key(members[column].iloc[i]))
            members = members.iloc[order]
            contrast = f"{factor}: {members[column].iloc[0]} → {members[column].iloc[1]}"
        else:  # the factor is not a config field: no natural direction, keep a stable order
            members = members.sort_values("trial_id")
            contrast = f"{factor} (unoriented)"
        row = {"pair_id": pair_id, "factor": factor, "contrast": contrast,
               "dataset": str(members["hp.dataset"].iloc[0]) if "hp.dataset" in members else ""}
        for quantity, how in QUANTITIES:
            before, after = (members[quantity].iloc[i] if quantity in members else np.nan for i in range(2))
            before, after = float(before), float(after)
            if how == "difference":
                change = after - before
            else:
                change = after / before if before > 0 and after > 0 else np.nan
            row.update({f"{quantity}.before": before, f"{quantity}.after": after, f"{quantity}.change": change})
        rows.append(row)
    return pd.DataFrame(rows, columns=None if rows else columns)


@paper_style()
def draw_pairs(trials: pd.DataFrame, gap: str = "accuracy") -> Figure:
    pairs = pair_differences(trials)
    if not len(pairs):
        return message_figure("No paired nets among these trials (no rows share a pair_id):\n"
                              "nothing to compare.", "Paired factors")
    target = gap_column(gap)
    quantities = [(q, how) for q, how in QUANTITIES if q == target or q not in GAP_COLUMNS]
    contrasts = sorted(pairs["contrast"].unique())
    palette = factor_palette(pairs["dataset"])
    fig, axes = new_figure(len(quantities), 1, panel_in=2.2, extra_width_in=1.2)
    fig.set_figheight(max(2.0, 1.2 + 0.45 * len(contrasts)))
    for ax, (quantity, how) in zip(axes[0], quantities):
        data = pairs.dropna(subset=[f"{quantity}.change"])
        if not len(data):
            ax.text(0.5, 0.5, "not measured", ha="center", va="center", transform=ax.transAxes)
        else:
            sns.boxplot(data=data, x=f"{quantity}.change", y="contrast", order=contrasts, ax=ax, color="0.92",
                        showfliers=False, width=0.6, linewidth=0.6)
            sns.stripplot(data=data, x=f"{quantity}.change", y="contrast", order=contrasts, hue="dataset",
                          palette=palette, ax=ax, size=3.5, jitter=0.15, legend=False)
        ax.axvline(0.0 if how == "difference" else 1.0, color="0.4", linewidth=0.6, linestyle=":")
        name = SHORT_NAMES.get(quantity, label(quantity))
        if how == "ratio":
            ax.set_xscale("log")
            tidy_log_axis(ax, "x", data[f"{quantity}.change"].to_numpy())
            ax.set_xlabel(f"{name}\nratio after / before")
        else:
            ax.set_xlabel(f"{name}\nchange after − before")
        ax.set_ylabel("")
        if ax is not axes[0, 0]:
            ax.set_yticklabels([])
        else:
            ax.set_yticks(range(len(contrasts)), [_with_count(c, pairs) for c in contrasts])
        if how == "ratio":
            _annotate_agreement(ax, pairs, quantity, target, contrasts)
    handles = [Line2D([], [], marker="o", linestyle="", markersize=4, color=color, label=name)
               for name, color in palette.items()]
    fig.legend(handles=handles, title="data set", loc="outside right center", frameon=False)
    fig.suptitle(f"Paired nets that differ in one factor: change of the gap ({target}), Jacobian norm and transitions")
    return fig


def _with_count(contrast: str, pairs: pd.DataFrame) -> str:
    return f"{contrast}\n({int((pairs['contrast'] == contrast).sum())} pairs)"


def _annotate_agreement(ax, pairs: pd.DataFrame, quantity: str, target: str, contrasts: list[str]) -> None:
    """Right-hand tick labels: per contrast, in how many pairs the measure moved the same way as the gap `target`."""
    labels = []
    for contrast in contrasts:
        rows = pairs[pairs["contrast"] == contrast].dropna(subset=[f"{quantity}.change", f"{target}.change"])
        agree = int((np.sign(np.log(rows[f"{quantity}.change"])) == np.sign(rows[f"{target}.change"])).sum())
        labels.append(f"{agree}/{len(rows)}")
    right = ax.twinx()
    right.set_ylim(ax.get_ylim())
    right.set_yticks(range(len(contrasts)), labels)
    right.tick_params(axis="y", length=0, labelsize=6.5)
    right.set_ylabel(f"pairs moving\nwith the {target.split('.')[-1]} gap", fontsize=6.5)


def fig4_pairs(trials: pd.DataFrame, out_dir: str, gap: str = "accuracy") -> list[str]:
    """Figure 4: within-pair change of the gap `gap` ("accuracy" -> gap.accuracy, "loss" -> gap.loss;
    a difference) and of Jacobian norm and transitions (ratio), per paired factor, with how many pairs
    moved with that gap. With no pairs it writes a figure that says so (never returns []).
    Writes fig4_pairs.{png,pdf}; returns their paths."""
    return save(draw_pairs(trials, gap), out_dir, "fig4_pairs")
