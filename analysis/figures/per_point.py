"""Figure 3: per test point, Jacobian norm against loss over many nets, with the relations of
docs/science.md section 3 (Novak et al. 2018, appendix on per-point generalization).

With n classes, p = e^{-l} the softmax probability of the correct class and
M = E_x ||dh/dx||_F^2 / n (logit Jacobian, over test points):

    Eq. 5   sqrt(n M / (n-1)) p (1-p)  <~  ||J_y||_2  <~  sqrt(2 M) p (1-p)
    Eq. 6   sqrt(n M / (n-1)) p (1-p)  <~  ||J_y||_2  <=  ||J||_F
    Eq. 7   ||J||_F  ~  sqrt(M) / (n-1) (1-p) sqrt(n^2 p^2 + n - 2)

J_y is the correct-class row of the softmax Jacobian. The top row of the figure shows ||J_y||_2
with the Eq. 5 band, the bottom row ||J||_F with the Eq. 6 lower bound and the Eq. 7 estimate.
M is the median over a data set's nets of measure.logit_jacobian_sq_test / n.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib import ticker
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from analysis.figures.style import (dataset_order, message_figure, new_figure, paper_style, save, tick_text,
                                    tidy_log_axis)

CURVE_STYLE = {
    "lower": dict(color="#d55e00", linestyle="-", label="Eq. 5/6 lower"),
    "upper": dict(color="#d55e00", linestyle="--", label="Eq. 5 upper"),
    "estimate": dict(color="black", linestyle="-", label="Eq. 7 estimate"),
}
ROWS = (  # (points column, y label, curves drawn over it)
    ("jacobian_y", r"$\|J_y\|_2$, correct-class row", ("lower", "upper")),
    ("jacobian", r"$\|J\|_F$", ("lower", "estimate")),
)


def per_point_bounds(loss: np.ndarray | float, M: float, n: int) -> dict[str, np.ndarray]:
    """The Eq. 5-7 curves at per-point losses `loss` (nats), for M = E||dh/dx||_F^2 / n and n classes.

    Returns {"lower": Eq. 5/6 lower bound on ||J_y||_2 (so on ||J||_F too), "upper": Eq. 5 upper
    bound on ||J_y||_2, "estimate": Eq. 7 estimate of ||J||_F}. lower <= upper for every n >= 2."""
    if n < 2:
        raise ValueError(f"per-point bounds need at least 2 classes, got n={n}")
    loss = np.asarray(loss, dtype=float)
    p = np.exp(-loss)
    q = -np.expm1(-loss)  # 1 - p, accurate for the tiny losses of well-fit points
    return {
        "lower": np.sqrt(n * M / (n - 1)) * p * q,
        "upper": np.sqrt(2 * M) * p * q,
        "estimate": np.sqrt(M) / (n - 1) * q * np.sqrt(n ** 2 * p ** 2 + (n - 2)),  # (n - 2) first: no cancellation
    }


def _test_points(points: pd.DataFrame, trials: pd.DataFrame) -> pd.DataFrame:
    """Test-split points of the given trials, with their data set and class count."""
    keep = ["trial_id", "hp.dataset", "data.n_classes", "measure.logit_jacobian_sq_test"]
    keep = [c for c in keep if c in trials.columns]
    if points is None or not len(points) or "split" not in points.columns:
        return pd.DataFrame(columns=["loss", "jacobian", "jacobian_y"] + keep)
    test = points[points["split"] == "test"]
    return test.merge(trials[keep], on="trial_id", how="inner")


def dataset_m(trials: pd.DataFrame, dataset: str) -> tuple[float, int] | None:
    """(median M, n classes) of a data set's trials, or None if not measured."""
    rows = trials[trials["hp.dataset"].astype(str) == dataset]
    if "measure.logit_jacobian_sq_test" not in rows.columns or "data.n_classes" not in rows.columns:
        return None
    rows = rows.dropna(subset=["measure.logit_jacobian_sq_test", "data.n_classes"])
    if not len(rows):
        return None
    n = int(rows["data.n_classes"].median())
    return float((rows["measure.logit_jacobian_sq_test"] / rows["data.n_classes"]).median()), n


@paper_style()
def draw_per_point(points: pd.DataFrame, trials: pd.DataFrame, gridsize: int = 40) -> Figure:
    data = _test_points(points, trials)
    rows = [r for r in ROWS if r[0] in data.columns and data[r[0]].notna().any()]
    datasets = dataset_order(data)
    if not datasets or not rows:
        return message_figure("Nothing to plot: no per-point measurements of test points for these trials.",
                              "Per-point Jacobian norm vs loss")
    fig, axes = new_figure(len(datasets), len(rows), extra_width_in=0.6)
    norm = LogNorm(1, _max_cell_count(data, rows, gridsize))  # one color scale for all panels
    cells = None
    for c, name in enumerate(datasets):
        subset = data[data["hp.dataset"].astype(str) == name]
        m_n = dataset_m(trials, name)
        for r, (column, ylabel, curves) in enumerate(rows):
            ax = axes[r, c]
            xy = subset[["loss", column]].dropna()
            positive = xy[(xy["loss"] > 0) & (xy[column] > 0)]
            title = f"{name}: {subset['trial_id'].nunique()} nets,\n{len(positive)} test points"
            title += f"; M = {m_n[0]:.3g}, n = {m_n[1]}" if m_n else "; M not measured"
            if len(xy) > len(positive):
                title += f"\n({len(xy) - len(positive)} at loss or norm 0 not shown)"
            ax.set_title(title, fontsize=7)
            ax.set_xlabel("test-point loss $l(x)$ (nats)")
            ax.set_ylabel(ylabel)
            if not len(positive):
                ax.text(0.5, 0.5, "no positive values", ha="center", va="center", transform=ax.transAxes)
                continue
            cells = ax.hexbin(positive["loss"], positive[column], xscale="log", yscale="log", gridsize=gridsize,
                              mincnt=1, cmap="Blues", norm=norm, linewidths=0.1)
            if m_n is not None:
                grid = np.geomspace(positive["loss"].min(), positive["loss"].max(), 200)
                bounds = per_point_bounds(grid, *m_n)
                for key in curves:
                    ax.plot(grid, bounds[key], **CURVE_STYLE[key])
                if c == 0:
                    ax.legend(loc="upper left", frameon=False, fontsize=6.5)
            ax.set_ylim(positive[column].min() / 2, positive[column].max() * 2)
            tidy_log_axis(ax, "x", positive["loss"].to_numpy())
            tidy_log_axis(ax, "y", positive[column].to_numpy())
    if cells is not None:
        bar = fig.colorbar(cells, ax=list(axes.ravel()), label="test points per hexagonal cell", shrink=0.6)
        bar.ax.yaxis.set_major_formatter(ticker.FuncFormatter(tick_text))
    fig.suptitle("Per test point: Jacobian norm vs loss,\nwith the per-point relations Eq. 5-7 (M: median over nets)")
    return fig


def _max_cell_count(data: pd.DataFrame, rows: tuple, gridsize: int) -> float:
    """Largest hexbin count over all panels (for a shared color scale); at least 2."""
    most = 2.0
    scratch = Figure().subplots()
    for _, subset in data.groupby("hp.dataset"):
        for column, _, _ in rows:
            xy = subset[["loss", column]].dropna()
            xy = xy[(xy["loss"] > 0) & (xy[column] > 0)]
            if len(xy):
                cells = scratch.hexbin(xy["loss"], xy[column], xscale="log", yscale="log", gridsize=gridsize, mincnt=1)
                most = max(most, float(cells.get_array().max()))
    return most


def fig3_per_point(points: pd.DataFrame, trials: pd.DataFrame, out_dir: str) -> list[str]:
    """Figure 3: density of (loss, Jacobian norm) over test points of all nets in `trials`, a column per
    data set, with the Eq. 5-7 curves. Writes fig3_per_point.{png,pdf}; returns their paths."""
    return save(draw_per_point(points, trials), out_dir, "fig3_per_point")
