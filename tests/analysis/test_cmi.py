"""analysis.stats.cmi (Jiang et al. 2020's conditional mutual information) against a direct count over pairs,
and on the three cases whose answer is known: a measure equal to the gap, one independent of everything,
and one that only copies an axis which drives the gap."""

import itertools
import math
from collections import Counter

import numpy as np
import pandas as pd
import pytest

from analysis.stats import cmi


def _direct(df, measure, target, subset):
    """I(V_mu; V_g | U_S) / H(V_g | U_S) by counting ordered pairs in Python dictionaries."""
    rows = df.to_dict("records")
    sign = lambda v: (v > 0) - (v < 0)  # noqa: E731
    joint = Counter()
    for a, b in itertools.permutations(range(len(rows)), 2):
        u = tuple((rows[a][s], rows[b][s]) for s in subset)
        joint[u, sign(rows[a][measure] - rows[b][measure]), sign(rows[a][target] - rows[b][target])] += 1
    total = sum(joint.values())
    mutual = entropy = 0.0
    for u in {key[0] for key in joint}:
        cell = {key[1:]: n for key, n in joint.items() if key[0] == u}
        n_u = sum(cell.values())
        p_mu, p_g = Counter(), Counter()
        for (v, w), n in cell.items():
            p_mu[v] += n / n_u
            p_g[w] += n / n_u
        mutual += n_u / total * sum(n / n_u * math.log((n / n_u) / (p_mu[v] * p_g[w])) for (v, w), n in cell.items())
        entropy -= n_u / total * sum(p * math.log(p) for p in p_g.values())
    return mutual / entropy


def _trials(n, seed=0):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"hp.a": rng.integers(0, 3, n), "hp.b": rng.integers(0, 3, n), "hp.c": rng.integers(0, 2, n)})
    df["gap.accuracy"] = df["hp.a"] + 0.3 * rng.standard_normal(n)
    return df, rng


def test_the_score_of_every_conditioning_set_equals_a_direct_count():
    df, rng = _trials(24)
    df["measure.x"] = df["gap.accuracy"] + rng.standard_normal(24)
    df.loc[3, "measure.x"] = df.loc[4, "measure.x"]  # a tie: a sign of its own
    out = cmi(df, "measure.x", "gap.accuracy")
    assert set(out["scores"]) == {(), ("hp.a",), ("hp.b",), ("hp.c",), ("hp.a", "hp.b"), ("hp.a", "hp.c"),
                                  ("hp.b", "hp.c")}
    for subset, score in out["scores"].items():
        assert score == pytest.approx(_direct(df, "measure.x", "gap.accuracy", subset), rel=1e-9), subset
    assert out["k"] == min(out["scores"].values()) and out["scores"][out["argmin"]] == out["k"]
    assert out["n"] == 24 and out["pairs"] == 24 * 23


def test_a_measure_equal_to_the_gap_scores_one():
    df, _ = _trials(60)
    df["measure.same"] = df["gap.accuracy"]
    out = cmi(df, "measure.same", "gap.accuracy")
    assert out["k"] == pytest.approx(1.0)


def test_a_measure_independent_of_everything_scores_about_zero():
    df, rng = _trials(200)
    df["measure.noise"] = rng.standard_normal(200)
    assert 0 <= cmi(df, "measure.noise", "gap.accuracy")["k"] < 0.02


def test_a_measure_that_copies_the_axis_driving_the_gap_scores_zero_once_that_axis_is_conditioned_on():
    df, rng = _trials(200)
    df["measure.copy"] = df["hp.a"] + 1e-3 * rng.standard_normal(200)  # tracks hp.a, nothing else
    out = cmi(df, "measure.copy", "gap.accuracy")
    assert out["scores"][()] > 0.3  # unconditioned it looks predictive
    assert "hp.a" in out["argmin"] and out["k"] < 0.02
    honest = df.assign(**{"measure.honest": df["gap.accuracy"] + 0.05 * rng.standard_normal(200)})
    assert cmi(honest, "measure.honest", "gap.accuracy")["k"] > 0.3  # tracks the gap within a level of hp.a too


def test_too_few_trials_or_missing_values_give_nan_not_an_error():
    df = pd.DataFrame({"hp.a": [0, 1], "gap.accuracy": [0.1, np.nan], "measure.x": [1.0, 2.0]})
    out = cmi(df, "measure.x", "gap.accuracy")
    assert math.isnan(out["k"]) and out["argmin"] is None and out["n"] == 1
