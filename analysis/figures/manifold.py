"""Figure 5: sensitivity on and off the data manifold. Jacobian norm and transition density along
ellipses through training points (same class / different classes), through test points, and along
random ellipses (docs/science.md section 2, "Transitions"; Novak et al. 2018).

Top row: the raw values over all trajectories of all nets (log y). Bottom row, when random ellipses
were measured: each trajectory's value divided by the median over the same net's random ellipses,
which removes the spread between nets and leaves the on/off-manifold contrast.
Transition density = transitions / Euclidean length of the trajectory (per unit input distance).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from analysis.figures.style import factor_palette, label, message_figure, new_figure, paper_style, save, tidy_log_axis

KIND_NAMES = {
    "train_same_class": "train,\nsame",
    "train_diff_class": "train,\ndiff.",
    "test": "test",
    "random": "random",
    "translation": "transl.",
}
VALUES = ("jacobian_mean", "transition_density")


def trajectory_values(trajectories: pd.DataFrame, trials: pd.DataFrame | None = None) -> pd.DataFrame:
    """Trajectories with `transition_density`, `dataset` and, per value, `<value>.vs_random` (value over
    the median of the same net's random ellipses; NaN without them)."""
    frame = trajectories.copy()
    frame["transition_density"] = frame["transitions"].astype(float) / frame["length"].where(frame["length"] > 0)
    if trials is not None and "hp.dataset" in trials.columns:
        frame = frame.merge(trials[["trial_id", "hp.dataset"]], on="trial_id", how="left")
        frame["dataset"] = frame["hp.dataset"].fillna("?").astype(str)
    else:
        frame["dataset"] = "all"
    random = frame[frame["kind"] == "random"].groupby("trial_id")[list(VALUES)].median()
    for value in VALUES:
        reference = frame["trial_id"].map(random[value]) if len(random) else np.nan
        frame[f"{value}.vs_random"] = frame[value] / pd.Series(reference, index=frame.index).where(lambda r: r > 0)
    return frame


@paper_style()
def draw_manifold(trajectories: pd.DataFrame, trials: pd.DataFrame | None = None) -> Figure:
    if trajectories is None or not len(trajectories) or "kind" not in trajectories.columns:
        return message_figure("No trajectories measured for these trials: nothing to plot.",
                              "On and off the data manifold")
    frame = trajectory_values(trajectories, trials)
    kinds = [k for k in KIND_NAMES if k in set(frame["kind"])] + sorted(set(frame["kind"]) - set(KIND_NAMES))
    relative = frame[frame["kind"] != "random"]
    has_relative = relative["jacobian_mean.vs_random"].notna().any()
    palette = factor_palette(frame["dataset"])
    fig, axes = new_figure(len(VALUES), 2 if has_relative else 1, panel_in=2.6, extra_width_in=0.9)
    for c, value in enumerate(VALUES):
        _box(axes[0, c], frame, value, kinds, palette, label(value))
        if has_relative:
            rel_kinds = [k for k in kinds if k != "random"]
            _box(axes[1, c], relative, f"{value}.vs_random", rel_kinds, palette,
                 f"{label(value)}\n÷ same net's random ellipses")
            axes[1, c].axhline(1.0, color="0.4", linestyle=":", linewidth=0.6)
    handles = [Line2D([], [], marker="s", linestyle="", markersize=5, color=color, label=name)
               for name, color in palette.items()]
    fig.legend(handles=handles, title="data set", loc="outside right center", frameon=False)
    title = ("Jacobian norm and transition density on vs off the data manifold: along ellipses through\n"
             "3 train points (of the same / different classes), 3 test points, or at random")
    if "translation" in kinds:
        title += "; transl.: a translated image"
    fig.suptitle(title, fontsize=8)
    return fig


def _box(ax, frame: pd.DataFrame, column: str, kinds: list[str], palette: dict, ylabel: str) -> None:
    """Box plot of a positive quantity by trajectory kind (log y); zeros are counted in the title."""
    data = frame.dropna(subset=[column])
    zeros = int((data[column] <= 0).sum())
    data = data[data[column] > 0]
    if not len(data):
        ax.text(0.5, 0.5, "no positive values", ha="center", va="center", transform=ax.transAxes)
    else:
        sns.boxplot(data=data, x="kind", y=column, order=kinds, hue="dataset", palette=palette, ax=ax,
                    log_scale=True, fliersize=1.5, linewidth=0.6, legend=False)
        tidy_log_axis(ax, "y", data[column].to_numpy())
    ax.set_xticks(range(len(kinds)), [KIND_NAMES.get(k, k) for k in kinds], fontsize=6.5)
    ax.set_xlabel("trajectory")
    ax.set_ylabel(ylabel)
    counts = f"{len(data)} trajectories"
    ax.set_title(counts + (f" ({zeros} with value 0 not shown)" if zeros else ""), fontsize=7)


def fig5_manifold(trajectories: pd.DataFrame, out_dir: str, trials: pd.DataFrame | None = None) -> list[str]:
    """Figure 5: Jacobian norm (jacobian_mean) and transitions / length by trajectory kind (log y).
    `trials` (optional) colors by data set. Writes fig5_manifold.{png,pdf}; returns their paths."""
    return save(draw_manifold(trajectories, trials), out_dir, "fig5_manifold")
