"""Synthetic trials for the intervention tests: 12 baselines, each with 4 regularized twins of known
Jacobian and gap changes, and one regularized trial without a twin."""

from __future__ import annotations

import datetime as dt
import itertools
import math

import numpy as np
import pandas as pd

from study.config import TrialConfig
from study.schema import hp_record

START = dt.datetime(2024, 6, 1, tzinfo=dt.timezone.utc)
BASES = [TrialConfig(dataset=d, width=w, seed=s, n_train=200, n_test=200)
         for d, w, s in itertools.product(("digits", "synthetic"), (8, 32), (0, 1, 2))]  # 12 base configs
# Regularized variants with known multiplicative Jacobian changes and additive gap changes:
# (settings, softmax J factor, logit J factor, gap change, test accuracy change)
VARIANTS = [
    ({"regularizer": "jacobian", "reg_strength": 0.01}, 1.15, 0.5, -0.02, 0.01),
    ({"regularizer": "jacobian", "reg_strength": 0.1}, 1.3, 0.25, -0.05, 0.02),  # the trap: logit falls, softmax rises
    ({"regularizer": "input_noise", "noise_std": 0.1}, 0.8, 0.8, 0.0, 0.0),
    ({"regularizer": "input_noise", "noise_std": 0.3}, 0.7, 0.7, 0.0, -0.01),
]


def base_values(i: int) -> dict:
    """Baseline measures of base config i: distinct per config, so a wrong match shows."""
    return {"gap.loss": 0.3 + 0.05 * i, "gap.accuracy": 0.1 + 0.01 * i, "test.accuracy": 0.8 - 0.01 * i,
            "measure.jacobian_test": 0.2 + 0.03 * i, "measure.logit_jacobian_test": 5.0 + i}


def trial_row(cfg: TrialConfig, values: dict, minute: int) -> dict:
    return {**hp_record(cfg), "trial_id": cfg.trial_id, "status": "ok", "train.accuracy": 1.0, "train.loss": 0.01,
            "test.loss": 0.01 + values["gap.loss"], **values,
            "created_at": pd.Timestamp(START + dt.timedelta(minutes=minute))}


def make_trials(noise: float = 0.01, seed: int = 0) -> tuple[pd.DataFrame, dict]:
    """The trials table (12 baselines, 48 regularized twins, 1 regularized trial without a twin) and
    {regularized trial id: (baseline id, expected deltas)}. `noise` jitters each delta, so that CIs have width."""
    rng = np.random.default_rng(seed)
    rows, expected = [], {}
    for i, base in enumerate(BASES):
        values = base_values(i)
        rows.append(trial_row(base, values, len(rows)))
        for settings, f_soft, f_logit, d_gap, d_acc in VARIANTS:
            cfg = base.replace(**settings)
            jitter = rng.normal(0, noise, size=4)
            new = {"gap.loss": values["gap.loss"] + d_gap + jitter[0],
                   "gap.accuracy": values["gap.accuracy"] - d_acc,
                   "test.accuracy": values["test.accuracy"] + d_acc,
                   "measure.jacobian_test": values["measure.jacobian_test"] * f_soft * math.exp(jitter[1]),
                   "measure.logit_jacobian_test": values["measure.logit_jacobian_test"] * f_logit * math.exp(jitter[2])}
            rows.append(trial_row(cfg, new, len(rows)))
            expected[cfg.trial_id] = (base.trial_id, {
                "d_gap_loss": new["gap.loss"] - values["gap.loss"], "d_gap_accuracy": -d_acc, "d_test_accuracy": d_acc,
                "d_jacobian": new["measure.jacobian_test"] - values["measure.jacobian_test"],
                "d_logit_jacobian": new["measure.logit_jacobian_test"] - values["measure.logit_jacobian_test"],
                "log_ratio_jacobian": math.log(f_soft) + jitter[1],
                "log_ratio_logit_jacobian": math.log(f_logit) + jitter[2]})
    orphan = BASES[0].replace(seed=9, regularizer="jacobian", reg_strength=0.1)  # its baseline was never run
    rows.append(trial_row(orphan, base_values(0), len(rows)))
    return pd.DataFrame(rows), expected
