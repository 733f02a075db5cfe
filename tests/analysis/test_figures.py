"""Figures: files written, axes labelled and on the right scales, per-point curves against hand and autograd."""

from __future__ import annotations

import math
import os
import sys

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))
from synthetic_results import make_results  # noqa: E402

from analysis import filter_trials, load_points, load_trajectories, load_trials  # noqa: E402
from analysis.figures import (draw_jacobian_vs_gap, draw_linear_regions, draw_manifold, draw_pairs, draw_per_point,  # noqa: E402
                              draw_transitions, fig1_jacobian_vs_gap, fig2_transitions, fig3_per_point, fig4_pairs,
                              fig5_manifold, fig6_linear_regions, pair_differences, per_point_bounds, region_map,
                              trajectory_values)
from analysis.figures.regions import boundaries  # noqa: E402
from study.models import MLP  # noqa: E402

PNG_MAGIC, PDF_MAGIC = b"\x89PNG\r\n\x1a\n", b"%PDF"


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    location = str(tmp_path_factory.mktemp("results"))
    make_results(location)
    kept = filter_trials(load_trials(location)).kept
    return kept, load_points(location), load_trajectories(location)


def assert_png_pdf(paths: list[str], name: str) -> None:
    assert [os.path.basename(p) for p in paths] == [f"{name}.png", f"{name}.pdf"]
    for path, magic in zip(paths, (PNG_MAGIC, PDF_MAGIC)):
        with open(path, "rb") as handle:
            head = handle.read(8)
        assert head.startswith(magic) and os.path.getsize(path) > 2000, path


def data_axes(fig):
    """The panels (not colorbars, not twin axes without data)."""
    return [ax for ax in fig.axes if ax.get_label() != "<colorbar>" and (ax.collections or ax.lines or ax.patches)]


# -- per-point relations (docs/science.md section 3) -----------------------------------------------------

def test_per_point_bounds_by_hand_at_log2():
    # p = e^{-l} = 1/2, p (1 - p) = 1/4.
    m = 3.0
    two = per_point_bounds(math.log(2), m, 2)
    assert two["lower"] == pytest.approx(math.sqrt(2 * m) / 4)  # sqrt(n M / (n-1)) / 4 with n = 2
    assert two["upper"] == pytest.approx(math.sqrt(2 * m) / 4)  # the band closes for two classes
    assert two["estimate"] == pytest.approx(math.sqrt(m) / 2)  # sqrt(M) (1/2) sqrt(4/4 + 0)
    ten = per_point_bounds(math.log(2), m, 10)
    assert ten["lower"] == pytest.approx(math.sqrt(10 * m / 9) / 4)
    assert ten["upper"] == pytest.approx(math.sqrt(2 * m) / 4)
    assert ten["estimate"] == pytest.approx(math.sqrt(m) / 9 * 0.5 * math.sqrt(25 + 8))


@pytest.mark.parametrize("n", [2, 3, 10, 100])
def test_per_point_bounds_are_ordered(n):
    loss = np.geomspace(1e-6, 20, 400)
    curves = per_point_bounds(loss, 0.7, n)
    assert np.all(curves["lower"] <= curves["upper"] + 1e-15)
    assert np.all(curves["lower"] <= curves["estimate"] + 1e-15)  # ||J_y||_2 <= ||J||_F
    assert np.all(curves["lower"] >= 0)
    with pytest.raises(ValueError, match="at least 2 classes"):
        per_point_bounds(loss, 0.7, 1)


def test_per_point_bounds_match_autograd_for_an_isotropic_linear_net():
    # Eq. 5-7 are exact when W W^T = M I and the wrong classes share the remaining probability:
    # then ||J_y||_2 is the lower bound and ||J||_F the Eq. 7 estimate.
    n, d, m, p = 10, 30, 2.5, 0.3
    torch.manual_seed(0)
    weights = torch.linalg.qr(torch.randn(d, n, dtype=torch.float64))[0].T * math.sqrt(m)
    logits = torch.full((n,), math.log((1 - p) / (n - 1)), dtype=torch.float64)
    logits[0] = math.log(p)
    x = weights.T @ logits / m
    jac = torch.autograd.functional.jacobian(lambda v: torch.softmax(weights @ v, 0), x)
    curves = per_point_bounds(-math.log(p), m, n)
    assert torch.linalg.norm(jac).item() == pytest.approx(float(curves["estimate"]), rel=1e-9)
    assert torch.linalg.norm(jac[0]).item() == pytest.approx(float(curves["lower"]), rel=1e-9)


# -- figures from the tables ------------------------------------------------------------------------

def test_fig1_files_labels_and_scales(tables, tmp_path):
    kept, _, _ = tables
    assert_png_pdf(fig1_jacobian_vs_gap(kept, str(tmp_path)), "fig1_jacobian_vs_gap")
    fig = draw_jacobian_vs_gap(kept)
    panels = data_axes(fig)
    assert [ax.get_title().split("\n")[0] for ax in panels] == ["digits", "synthetic"]
    assert panels[0].get_title().split("\n")[1].startswith("n = 20, Spearman ρ = ")
    for ax in panels:
        assert ax.get_xscale() == "log" and ax.get_yscale() == "linear"
        assert "Jacobian norm" in ax.get_xlabel() and "accuracy gap" in ax.get_ylabel()  # the default target
        assert sum(len(c.get_offsets()) for c in ax.collections) == 20  # every kept net of the data set is a point
    assert fig.legends[0].get_title().get_text() == "nonlinearity"
    for ax in data_axes(draw_jacobian_vs_gap(kept, gap="loss")):
        assert ax.get_xscale() == ax.get_yscale() == "log" and "nats" in ax.get_ylabel()


def test_fig1_numeric_hue_gets_a_titled_colorbar(tables):
    kept, _, _ = tables
    kept = kept.assign(**{"model.n_params": np.arange(len(kept)) * 1000 + 10})  # many numeric levels
    fig = draw_jacobian_vs_gap(kept, hue="model.n_params")
    bars = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert len(bars) == 1 and "n params" in bars[0].get_ylabel()


def test_fig2_rows_and_log_log_size(tables, tmp_path):
    kept, _, _ = tables
    assert_png_pdf(fig2_transitions(kept, str(tmp_path)), "fig2_transitions")
    panels = data_axes(draw_transitions(kept))
    assert len(panels) == 4
    top, bottom = panels[:2], panels[2:]
    assert all(ax.get_xlabel() == "transitions per test ellipse" and ax.get_xscale() == "log" for ax in top)
    assert all(ax.get_xlabel() == "hidden neurons" and ax.get_xscale() == ax.get_yscale() == "log" for ax in bottom)


def test_fig3_density_and_curves(tables, tmp_path):
    kept, points, _ = tables
    assert_png_pdf(fig3_per_point(points, kept, str(tmp_path)), "fig3_per_point")
    fig = draw_per_point(points, kept)
    panels = data_axes(fig)
    assert len(panels) == 4  # (||J_y||_2, ||J||_F) x 2 data sets
    for ax in panels:
        assert ax.get_xscale() == ax.get_yscale() == "log"
        assert "loss" in ax.get_xlabel() and "J" in ax.get_ylabel()
        assert len(ax.lines) == 2  # two of the Eq. 5-7 curves over each density
    labels = {line.get_label() for ax in panels for line in ax.lines}
    assert labels == {"Eq. 5/6 lower", "Eq. 5 upper", "Eq. 7 estimate"}
    bar = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert len(bar) == 1 and "test points" in bar[0].get_ylabel()


def test_fig3_without_points_says_so(tables, tmp_path):
    kept, _, _ = tables
    fig = draw_per_point(pd.DataFrame(), kept)
    assert "Nothing to plot" in fig.axes[0].texts[0].get_text()
    assert_png_pdf(fig3_per_point(pd.DataFrame(), kept, str(tmp_path)), "fig3_per_point")


def test_pair_differences_are_oriented_and_exact(tables):
    kept, _, _ = tables
    pairs = pair_differences(kept)
    assert len(pairs) == 8
    assert set(pairs["contrast"]) == {"augment: False → True", "random_labels: 0.0 → 1.0"}
    row = pairs[pairs["pair_id"] == "digits-random_labels-3"].iloc[0]
    members = kept[kept["pair_id"] == "digits-random_labels-3"].set_index("hp.random_labels")
    assert row["gap.loss.change"] == pytest.approx(members.loc[1.0, "gap.loss"] - members.loc[0.0, "gap.loss"])
    ratio = members.loc[1.0, "measure.jacobian_test"] / members.loc[0.0, "measure.jacobian_test"]
    assert row["measure.jacobian_test.change"] == pytest.approx(ratio)


def test_fig4_files_scales_and_no_pairs(tables, tmp_path):
    kept, _, _ = tables
    assert_png_pdf(fig4_pairs(kept, str(tmp_path)), "fig4_pairs")
    panels = data_axes(draw_pairs(kept))
    assert [ax.get_xscale() for ax in panels[:3]] == ["linear", "log", "log"]
    assert "change after − before" in panels[0].get_xlabel()
    unpaired = kept[kept["pair_id"].isna()]
    fig = draw_pairs(unpaired)
    assert "No paired nets" in fig.axes[0].texts[0].get_text()
    assert_png_pdf(fig4_pairs(unpaired, str(tmp_path / "none")), "fig4_pairs")


def test_fig5_kinds_scales_and_relative_values(tables, tmp_path):
    kept, _, trajectories = tables
    trajectories = trajectories[trajectories["trial_id"].isin(kept["trial_id"])]
    assert_png_pdf(fig5_manifold(trajectories, str(tmp_path), kept), "fig5_manifold")
    values = trajectory_values(trajectories, kept)
    random = values[values["kind"] == "random"]
    assert random.groupby("trial_id")["jacobian_mean.vs_random"].median().to_numpy() == pytest.approx(1.0)
    row = values.iloc[0]
    assert row["transition_density"] == pytest.approx(row["transitions"] / row["length"])
    panels = data_axes(draw_manifold(trajectories, kept))
    assert len(panels) == 4 and all(ax.get_yscale() == "log" for ax in panels)
    assert [t.get_text() for t in panels[0].get_xticklabels()][-1] == "random"
    assert "no trajectories" in draw_manifold(trajectories.iloc[:0]).axes[0].texts[0].get_text().lower()


# -- figure 6: linear regions -----------------------------------------------------------------------

def test_region_map_of_a_known_two_unit_net():
    # In 2-D through p0 = 0, p1 = e1, p2 = e2 the plane coordinates are the inputs; units x - 0.5 and
    # y - 0.5 cut the view into 4 quadrants meeting at (0.5, 0.5).
    net = MLP(2, 2, 2, 3, "relu")
    with torch.no_grad():
        net.layers[0].weight.copy_(torch.eye(2))
        net.layers[0].bias.copy_(torch.tensor([-0.5, -0.5]))
    points = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    ids, patterns = region_map(net, points, resolution=32, span=(0.0, 1.0))
    assert len(patterns) == 4
    assert len({ids[0, 0], ids[0, -1], ids[-1, 0], ids[-1, -1]}) == 4  # corners in different regions
    edge = boundaries(ids)
    assert edge[:, 15].all() and edge[15, :].all() and edge.sum() == 32 + 32 - 1


def test_fig6_linear_regions_before_and_after_training(tmp_path):
    pytest.importorskip("sklearn")  # the digits data set
    from study import TrialConfig, run_trial

    cfg = TrialConfig(dataset="digits", n_train=60, n_test=30, width=16, depth=3, max_steps=50)
    trained = run_trial(cfg).model  # the recompute path (trained=None) runs in test_report's end-to-end test
    assert_png_pdf(fig6_linear_regions(cfg, str(tmp_path), resolution=48, trained=trained), "fig6_linear_regions")
    fig = draw_linear_regions(cfg, resolution=48, trained=trained)
    before, after = fig.axes
    assert before.get_title().startswith("before training") and after.get_title().startswith("after training")
    for ax in (before, after):
        assert ax.get_xlabel().startswith("$a$") and ax.get_ylabel().startswith("$b$")
        assert int(ax.get_title().split(": ")[1].split()[0]) > 1  # several regions in view
        assert len(ax.images) == 1 and ax.images[0].get_array().shape == (48, 48, 3)
        assert sum("class" in t.get_text() for t in ax.texts) == 3  # the three training points are marked
