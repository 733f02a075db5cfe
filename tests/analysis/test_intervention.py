"""Regularizers as interventions: twin matching, deltas, bootstrap effects, conclusions (figure 7 and the
report: test_intervention_report.py)."""

from __future__ import annotations

import math
import re

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest

from analysis.bootstrap import bootstrap_statistic
from analysis.intervention import MIN_PAIRS_CI, conclusion, conclusion_sentence, intervention_effects, regularizer_pairs
from study.config import TrialConfig

from intervention_trials import base_values, make_trials, trial_row  # noqa: E402


@pytest.fixture(scope="module")
def trials():
    return make_trials()


@pytest.fixture(scope="module")
def pairs(trials):
    return regularizer_pairs(trials[0])


# -- matching and deltas ----------------------------------------------------------------------------

def test_matching_finds_exactly_the_twins_and_counts_the_orphan(trials, pairs):
    table, expected = trials
    assert len(pairs) == 48 and set(pairs["trial_id"]) == set(expected)
    assert dict(zip(pairs["trial_id"], pairs["baseline_id"])) == {k: v[0] for k, v in expected.items()}
    assert pairs.attrs["n_regularized"] == 49 and pairs.attrs["duplicate_baselines"] == 0
    orphan = table.loc[table["hp.seed"] == 9, "trial_id"].item()
    assert pairs.attrs["unmatched"] == [orphan]
    assert set(pairs["method"]) == {"jacobian", "input_noise"}
    noise = pairs[pairs["regularizer"] == "input_noise"]
    assert sorted(noise["strength"].unique()) == [0.1, 0.3] and set(noise["setting"]) == {"σ=0.1", "σ=0.3"}
    assert set(pairs.loc[pairs["regularizer"] == "jacobian", "setting"]) == {"λ=0.01", "λ=0.1"}


def test_deltas_equal_hand_computed_values(trials, pairs):
    _, expected = trials
    for row in pairs.itertuples(index=False):
        for column, value in expected[row.trial_id][1].items():
            assert getattr(row, column) == pytest.approx(value, abs=1e-12), column


def test_matching_ignores_pair_id_and_other_hp_differences():
    base = TrialConfig(width=8)
    rows = [trial_row(base, base_values(0), 0), trial_row(base.replace(lr=0.01), base_values(1), 1),
            trial_row(base.replace(lr=0.01, regularizer="jacobian", reg_strength=1.0), base_values(2), 2),
            trial_row(base.replace(regularizer="jacobian", reg_strength=1.0, reg_target="softmax"), base_values(3), 3)]
    frame = pd.DataFrame(rows)
    frame["pair_id"] = ["x", "y", "x", None]  # misleading pair ids must not matter
    pairs = regularizer_pairs(frame)
    assert list(pairs["baseline_id"]) == [rows[1]["trial_id"], rows[0]["trial_id"]]
    assert list(pairs["method"]) == ["jacobian", "jacobian (softmax target)"]
    assert pairs["d_gap_loss"].tolist() == pytest.approx([0.05, 0.15])


def test_newest_of_duplicate_baselines_serves_and_missing_hp_values_match():
    a, b = TrialConfig(width=8), TrialConfig(width=16)
    reg = {"regularizer": "jacobian", "reg_strength": 1.0}
    rows = [trial_row(a, base_values(0), 3), trial_row(a, base_values(1), 9), trial_row(a, base_values(2), 1),  # a: 3 baselines
            trial_row(a.replace(**reg), base_values(3), 4),
            trial_row(b, base_values(4), 5), trial_row(b.replace(**reg), base_values(5), 6),  # hp.extra missing in both
            trial_row(b.replace(seed=7, **reg), base_values(6), 7)]  # no baseline with seed 7: unmatched
    frame = pd.DataFrame(rows)
    frame["trial_id"] = ["a-mid", "a-new", "a-old", "a-reg", "b", "b-reg", "c-reg"]
    frame["hp.extra"] = [1.0, 1.0, 1.0, 1.0, np.nan, np.nan, np.nan]
    frame = pd.concat([frame, frame.iloc[[0]].assign(trial_id="a-nat", created_at=pd.NaT)], ignore_index=True)
    frame["created_at"] = frame["created_at"].astype("datetime64[ns, UTC]")
    pairs = regularizer_pairs(frame.iloc[::-1])  # row order and index of the input do not matter
    assert list(zip(pairs["trial_id"], pairs["baseline_id"])) == [("a-reg", "a-new"), ("b-reg", "b")]
    assert pairs["d_gap_loss"].tolist() == pytest.approx([0.1, 0.05])  # against the newest baseline's values
    assert pairs.attrs == {"n_regularized": 3, "unmatched": ["c-reg"], "duplicate_baselines": 1}
    assert list(pairs.columns) == PAIR_COLUMNS_BEFORE


PAIR_COLUMNS_BEFORE = [  # the columns of regularizer_pairs as they were before it used pandas.merge
    "method", "regularizer", "reg_target", "reg_strength", "reg_projections", "noise_std", "strength", "setting",
    "dataset", "trial_id", "baseline_id", "test_accuracy", "test_accuracy_base", "d_gap_loss", "d_gap_accuracy",
    "d_jacobian", "d_logit_jacobian", "d_test_accuracy", "log_ratio_jacobian", "log_ratio_logit_jacobian"]


def test_no_regularized_trials_gives_an_empty_table():
    pairs = regularizer_pairs(pd.DataFrame([trial_row(TrialConfig(), base_values(0), 0)]))
    assert len(pairs) == 0 and pairs.attrs["n_regularized"] == 0 and pairs.attrs["unmatched"] == []
    assert len(intervention_effects(pairs)) == 0 and conclusion(intervention_effects(pairs)) == []


# -- effects ----------------------------------------------------------------------------------------

def test_effects_mean_median_fractions_and_cis(pairs):
    effects = intervention_effects(pairs, n_boot=400, seed=3)
    assert list(effects["level"]) == ["regularizer", "strength", "strength"] * 2
    assert list(effects["method"]) == ["jacobian"] * 3 + ["input_noise"] * 3
    for _, row in effects.iterrows():
        sub = pairs[pairs["method"] == row["method"]]
        if row["level"] == "strength":
            sub = sub[sub["setting"] == row["setting"]]
        assert row["n"] == len(sub)
        assert row["d_gap_loss"] == pytest.approx(sub["d_gap_loss"].mean())
        assert row["softmax_log_ratio"] == pytest.approx(sub["log_ratio_jacobian"].median())
        assert row["logit_log_ratio"] == pytest.approx(sub["log_ratio_logit_jacobian"].median())
        assert row["frac_softmax_down"] == pytest.approx((sub["log_ratio_jacobian"] < 0).mean())
        assert row["frac_gap_down"] == pytest.approx((sub["d_gap_loss"] < 0).mean())
        for name in ("d_gap_loss", "softmax_log_ratio", "logit_log_ratio", "d_test_accuracy"):
            assert row[f"{name}_lo"] <= row[name] <= row[f"{name}_hi"], name
        assert row["spearman_lo"] <= row["spearman"] <= row["spearman_hi"]
    again = intervention_effects(pairs, n_boot=400, seed=3)
    pd.testing.assert_frame_equal(effects, again)
    other = intervention_effects(pairs, n_boot=400, seed=4)
    assert not np.allclose(effects["d_gap_loss_lo"], other["d_gap_loss_lo"])


def test_bootstrap_statistic_matches_a_loop_and_refuses_tiny_samples():
    values = np.array([0.3, -0.1, 0.5, 0.2, 0.9, -0.4, 0.1])
    est, lo, hi, n_finite, n_boot = bootstrap_statistic(values, np.mean, n_boot=300, seed=1)
    index = np.random.default_rng(1).integers(0, 7, size=(300, 7))
    loop = [values[row].mean() for row in index]
    assert est == pytest.approx(values.mean()) and n_finite == n_boot == 300
    assert (lo, hi) == pytest.approx(tuple(np.percentile(loop, [2.5, 97.5])))
    tiny = bootstrap_statistic(values[:2], np.mean, min_n=MIN_PAIRS_CI)
    assert math.isnan(tiny.lo) and tiny.n_finite == 0  # two pairs: no CI
    assert math.isnan(bootstrap_statistic(np.array([np.nan]), np.mean).estimate)


EFFECT_COLUMNS_BEFORE = [  # the columns of intervention_effects before the finite counts were added
    "level", "method", "regularizer", "reg_target", "setting", "strength", "n", "n_datasets", "d_gap_loss",
    "d_gap_loss_lo", "d_gap_loss_hi", "d_gap_accuracy", "d_gap_accuracy_lo", "d_gap_accuracy_hi", "d_test_accuracy",
    "d_test_accuracy_lo", "d_test_accuracy_hi", "softmax_log_ratio", "softmax_log_ratio_lo", "softmax_log_ratio_hi",
    "logit_log_ratio", "logit_log_ratio_lo", "logit_log_ratio_hi", "frac_softmax_down", "frac_logit_down",
    "frac_gap_down", "spearman", "spearman_lo", "spearman_hi"]
FINITE_COLUMNS = ["spearman_n_boot_finite", "d_gap_loss_n_boot_finite", "d_gap_accuracy_n_boot_finite",
                  "d_test_accuracy_n_boot_finite", "softmax_log_ratio_n_boot_finite", "logit_log_ratio_n_boot_finite",
                  "n_boot"]


def test_effect_cis_are_those_of_the_former_bootstrap_and_count_finite_replicates(pairs):
    effects = intervention_effects(pairs, n_boot=400, seed=3)
    assert list(effects.columns) == EFFECT_COLUMNS_BEFORE + FINITE_COLUMNS  # new columns only at the end
    # Computed with the bootstrap of intervention.py and stats.py before analysis.bootstrap.percentile_bootstrap:
    # the same seed must still draw the same resamples.
    before = {0: (-0.040605922707836126, -0.027040152269446435, 0.13844089374224558, 0.265267317076034,
                  -0.7830418947303073, -0.3525470766320752),
              4: (-0.003041084292624416, 0.007990954035586988, -0.2282631865652922, -0.21164189495271288,
                  -0.8809130504063312, 0.3064119350870927)}
    columns = ["d_gap_loss_lo", "d_gap_loss_hi", "softmax_log_ratio_lo", "softmax_log_ratio_hi", "spearman_lo",
               "spearman_hi"]
    for row, values in before.items():
        assert tuple(effects.loc[row, columns]) == pytest.approx(values, rel=1e-12, abs=1e-15)
    assert (effects[FINITE_COLUMNS] == 400).all().all()  # every replicate of these is finite
    few = intervention_effects(pairs.groupby("setting").head(2), n_boot=100)  # 2 pairs per strength, 4 pooled
    assert (few["spearman_n_boot_finite"] == 0).all() and (few["n_boot"] == 100).all()
    assert few["d_gap_loss_n_boot_finite"].tolist() == [100 if level == "regularizer" else 0 for level in few["level"]]


def test_spearman_needs_five_pairs(pairs):
    few = intervention_effects(pairs.groupby("setting").head(2), n_boot=100)  # 4 pairs per regularizer
    assert few["spearman"].isna().all()


# -- conclusion -------------------------------------------------------------------------------------

def test_conclusion_names_the_jacobian_that_moved(pairs):
    effects = intervention_effects(pairs, n_boot=400)
    sentences = conclusion(effects)
    assert len(sentences) == 2
    jacobian, noise = sentences  # in study.config.REGULARIZERS order
    assert jacobian.startswith("jacobian (n=24; λ=0.01, λ=0.1): the logit Jacobian fell ")
    assert "while the softmax Jacobian rose " in jacobian
    assert jacobian.endswith(": lowering the logit Jacobian lowered the gap.")
    assert re.search(r"the loss gap changed by -0\.0\d+ \[-0\.0\d+, -0\.0\d+\] nats", jacobian)
    assert noise.startswith("input_noise (n=24; σ=0.1, σ=0.3): the softmax Jacobian fell ")
    assert "and the logit Jacobian fell" in noise and "the loss gap showed no clear change" in noise
    assert noise.endswith("lowering both Jacobians did not clearly change the gap.")
    row = effects[(effects["method"] == "jacobian") & (effects["level"] == "regularizer")].iloc[0]
    fold = math.exp(-row["logit_log_ratio"])
    assert f"fell {fold:.1f}x [{math.exp(-row['logit_log_ratio_hi']):.1f}, " in jacobian


def test_conclusion_for_a_regularizer_that_lowers_no_jacobian():
    row = pd.Series({"method": "bias_jacobian", "n": 6, "setting": "λ=1", "d_gap_loss": 0.1, "d_gap_loss_lo": 0.05,
                     "d_gap_loss_hi": 0.2, "softmax_log_ratio": 0.3, "softmax_log_ratio_lo": 0.1,
                     "softmax_log_ratio_hi": 0.5, "logit_log_ratio": 0.0, "logit_log_ratio_lo": -0.1,
                     "logit_log_ratio_hi": 0.1})
    text = conclusion_sentence(row)
    assert "the softmax Jacobian rose 1.35x [1.11, 1.65] while the logit Jacobian showed no clear change" in text
    assert "the loss gap changed by 0.1 [0.05, 0.2] nats" in text and "neither Jacobian fell" in text
    few = row.copy()
    few["n"] = 2
    assert "no conclusion" in conclusion_sentence(few)
