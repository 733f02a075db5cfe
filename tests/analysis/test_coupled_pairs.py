"""Coupled pairs for the sign error: two-trial pairs (pair_id) and intervention groups (twin_id), by hand."""

import math

import pandas as pd
import pytest

from analysis.stats import coupled_pairs, sign_error


def twins_frame() -> pd.DataFrame:
    """One twin group: the untreated twin t0 and three treated trials; a treated trial whose twin is missing;
    a plain two-trial pair beside them."""
    rows = [("t0", "t0", "regularizer", "none", 5.0, 2.0),
            ("t1", "t0", "regularizer", "jacobian", 4.0, 1.0),      # both down: 0
            ("t2", "t0", "regularizer", "jacobian", 6.0, 1.0),      # against: 1
            ("t3", "t0", "regularizer", "input_noise", 3.0, 1.5),   # both down: 0
            ("t9", "gone", "regularizer", "jacobian", 1.0, 1.0)]    # twin not among the trials
    frame = pd.DataFrame(rows, columns=["trial_id", "twin_id", "twin.factor", "hp.regularizer", "measure.m",
                                        "gap.loss"])
    pair = pd.DataFrame({"trial_id": ["p1", "p2"], "pair_id": ["P", "P"], "pair.factor": ["augment"] * 2,
                         "hp.regularizer": ["none"] * 2, "measure.m": [1.0, 2.0], "gap.loss": [1.0, 0.5]})  # against: 1
    return pd.concat([frame, pair], ignore_index=True)


def test_every_treated_trial_is_paired_with_its_twin():
    pairs, ambiguous = coupled_pairs(twins_frame())
    assert ambiguous == 0
    members = sorted((factor, tuple(rows["trial_id"])) for factor, rows in pairs)
    assert members == [("?", ("t9",)), ("augment", ("p1", "p2")), ("regularizer=input_noise", ("t0", "t3")),
                       ("regularizer=jacobian", ("t0", "t1")), ("regularizer=jacobian", ("t0", "t2"))]


def test_sign_error_of_a_twin_group_by_hand():
    out = sign_error(twins_frame(), "measure.m")
    assert out["per_factor"] == {"augment": {"error": 1.0, "n": 1}, "regularizer=input_noise": {"error": 0.0, "n": 1},
                                 "regularizer=jacobian": {"error": 0.5, "n": 2}}
    assert out["n_pairs"] == 4 and out["overall"] == pytest.approx(2 / 4) and out["incomplete"] == 1
    assert out["worst_factor"] == "augment" and out["ambiguous"] == 0
    alone = sign_error(twins_frame().assign(twin_id=None), "measure.m")  # without twin ids: the pair only
    assert alone["n_pairs"] == 1 and alone["per_factor"] == {"augment": {"error": 1.0, "n": 1}}
    assert math.isnan(sign_error(twins_frame().assign(twin_id=None, pair_id=None), "measure.m")["overall"])
