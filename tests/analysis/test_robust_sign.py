"""analysis.robust_sign (Dziugaite et al. 2020's robust sign error) on grids whose answer is known, and its noise
weight and effective-sample-size filter against the formulas computed by hand."""

import math

import numpy as np
import pandas as pd
import pytest

from analysis.robust_sign import environments, noise_weight, robust_sign_error


def _grid(seeds=15, seed=0):
    """Axes a (0/1) and b (0/1/2), `seeds` repetitions; the accuracy gap rises with a by 0.2 (n_test 1000)."""
    rng = np.random.default_rng(seed)
    rows = [{"hp.a": a, "hp.b": b, "hp.seed": s, "hp.n_test": 1000} for a in (0, 1) for b in (0, 1, 2)
            for s in range(seeds)]
    df = pd.DataFrame(rows)
    df["gap.accuracy"] = 0.1 + 0.2 * df["hp.a"] + 0.05 * df["hp.b"] + 0.01 * rng.standard_normal(len(df))
    return df, rng


def test_the_noise_weight_is_the_formula():
    n = np.array([1000.0, 1000.0, 100.0])
    delta = np.array([0.2, 0.001, 0.05])
    expected = [max(0.0, 1 - 2 * math.exp(-2 * k * (d / 2) ** 2)) ** 2 for d, k in zip(delta, n)]
    assert noise_weight(delta, n) == pytest.approx(expected)
    assert noise_weight(np.array([0.0]), np.array([1000.0]))[0] == 0.0  # no difference: no trust


def test_a_measure_moving_with_the_gap_has_no_sign_error_and_one_against_it_has_all():
    df, _ = _grid()
    df["measure.good"] = df["gap.accuracy"]
    df["measure.bad"] = -df["gap.accuracy"]
    good = robust_sign_error(df, "measure.good")
    assert good["mean"] == 0 and good["max"] == 0
    assert robust_sign_error(df, "measure.bad")["mean"] == pytest.approx(1.0)
    # axis a: 3 contexts (b) x 1 value pair; axis b: 2 contexts (a) x 3 value pairs
    assert good["per_axis"]["hp.a"]["environments"] == 3 and good["environments"] + good["dropped"] == 3 + 6


def test_the_worst_environment_is_the_robust_statistic():
    df, _ = _grid()
    right = df["hp.b"] != 2  # right in the environments of contexts b = 0, 1; wrong where b = 2
    df["measure.x"] = np.where(right, df["gap.accuracy"], -df["gap.accuracy"])
    stats = robust_sign_error(df, "measure.x", axes=["hp.a", "hp.b"])
    a = stats["per_axis"]["hp.a"]
    assert a["mean"] == pytest.approx(1 / 3) and a["max"] == pytest.approx(1.0)


def test_environments_with_differences_too_small_to_trust_are_dropped_by_their_ess():
    df, rng = _grid()
    df["gap.accuracy"] = 0.1 + 1e-4 * rng.standard_normal(len(df))  # no axis moves the gap beyond noise
    df["measure.x"] = rng.standard_normal(len(df))
    table = environments(df, "measure.x", "gap.accuracy")
    assert not table["kept"].any() and (table["ess"] < 12).all()
    assert math.isnan(robust_sign_error(df, "measure.x")["mean"])


def test_the_environment_loss_is_the_weighted_mean_of_the_pairs_sign_errors():
    df = pd.DataFrame({"hp.a": [0, 0, 1, 1], "hp.seed": [0, 1, 0, 1], "hp.n_test": 100,
                       "gap.accuracy": [0.1, 0.12, 0.4, 0.3], "measure.x": [1.0, 3.0, 2.0, 0.5]})
    (row,) = environments(df, "measure.x", "gap.accuracy", min_ess=0).itertuples(index=False)
    pairs = [(0, 2), (0, 3), (1, 2), (1, 3)]
    g, mu = df["gap.accuracy"].to_numpy(), df["measure.x"].to_numpy()
    w = [max(0, 1 - 2 * math.exp(-2 * 100 * (abs(g[i] - g[j]) / 2) ** 2)) ** 2 for i, j in pairs]
    e = [(1 - np.sign(mu[i] - mu[j]) * np.sign(g[i] - g[j])) / 2 for i, j in pairs]
    assert row.loss == pytest.approx(np.dot(w, e) / sum(w)) and row.ess == pytest.approx(sum(w) ** 2 / np.dot(w, w))
    assert row.pairs == 4
