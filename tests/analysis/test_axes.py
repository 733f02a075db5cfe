"""analysis.axes: columns that determine each other one-to-one are one axis, so that the protocols that compare
trials differing in one axis only (Psi, CMI, the robust sign error) see the grid preset's optimizer, whose
learning rate is linked to it, as the axis it is."""

import math

import numpy as np
import pandas as pd
import pytest

from analysis.axes import axis_classes, linked_classes, swept_axes
from analysis.cmi import cmi_score
from analysis.robust_sign import robust_sign_error
from analysis.stats import granulated_kendall


def _grid(linked=True):
    """width x optimizer (lr linked to it, or drawn freely), 6 seeds; adam's gap is 0.1 larger."""
    rng = np.random.default_rng(1)
    rows = []
    for width in (8, 16):
        for optimizer, lr in (("sgd", 0.1), ("adam", 0.002)):
            for seed in range(6):
                rows.append({"hp.width": width, "hp.optimizer": optimizer, "hp.seed": seed, "hp.n_test": 10_000,
                             "hp.lr": lr if linked else float(rng.choice([0.1, 0.01]))})
    df = pd.DataFrame(rows)
    df["gap.accuracy"] = 0.1 + 0.1 * (df["hp.optimizer"] == "adam") + 0.001 * df["hp.width"] \
        + 0.002 * rng.standard_normal(len(df))
    df["measure.m"] = df["gap.accuracy"] + 0.001 * rng.standard_normal(len(df))
    return df


def test_a_linked_column_joins_the_axis_it_follows():
    df = _grid()
    assert swept_axes(df) == ["hp.width", "hp.optimizer"]
    assert axis_classes(df) == {"hp.width": ["hp.width"], "hp.optimizer": ["hp.optimizer", "hp.lr"]}
    assert axis_classes(df, include_seed=True)["hp.seed"] == ["hp.seed"]
    free = _grid(linked=False)
    assert swept_axes(free) == ["hp.width", "hp.optimizer", "hp.lr"]  # not one-to-one: an axis of its own


def test_one_to_one_means_both_ways():
    a, b, c = np.array([0, 0, 1, 1]), np.array([5, 5, 7, 7]), np.array([0, 0, 1, 2])
    assert linked_classes({"a": a, "b": b, "c": c}) == {"a": ["a", "b"], "c": ["c"]}  # c refines a: not linked


def test_the_protocols_see_the_linked_axis():
    df = _grid()
    psi = granulated_kendall(df, "measure.m", "gap.accuracy")
    assert psi["axes"] == ["hp.width", "hp.optimizer"] and psi["groups"]["hp.optimizer"] == 12
    assert psi["psi"]["hp.optimizer"] == pytest.approx(1.0)
    rse = robust_sign_error(df, "measure.m", "gap.accuracy")
    assert rse["per_axis"]["hp.optimizer"]["environments"] == 2 and rse["per_axis"]["hp.optimizer"]["mean"] == 0
    assert "hp.lr" not in rse["per_axis"]
    cmi = cmi_score(df, "measure.m", "gap.accuracy")
    assert all("hp.lr" not in s for s in cmi["scores"]) and math.isfinite(cmi["k"])
