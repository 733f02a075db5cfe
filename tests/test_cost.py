"""study.cost.estimate_seconds: the formula computed by hand for one config, the terms it scales, and the
bound's use: every quick trial runs alone (at or above sweeps.units.ALONE_S), every smoke trial is bundled."""

from __future__ import annotations

import dataclasses

from study.config import TrialConfig
from study.cost import FLOPS, STEP_S, TRIAL_S, estimate_seconds
from sweeps.presets import QUICK, SMOKE
from sweeps.sampling import sample
from sweeps.units import ALONE_S

SMALL = TrialConfig(dataset="synthetic", synthetic_dim=8, n_train=64, n_test=32, batch_size=16, width=16, depth=3,
                    max_steps=100, eval_every=20)


def test_the_formula_by_hand():
    p = (8 * 16 + 16) + (16 * 16 + 16) + (16 * 10 + 10)  # 8 -> 16 -> 16 -> 10 classes, with biases: 586
    train = 100 * (STEP_S + 6 * 16 * p / FLOPS)
    checks = (100 / 20) * 64 * 2 * p / FLOPS
    jacobian = (64 + 32) * 2 * p * (1 + 2 * 10) / FLOPS
    flatness = 2 * 10 * 8 * 64 * 2 * p / FLOPS  # 10 bisection steps x 8 draws, both flatness measures, 64 points
    assert abs(estimate_seconds(SMALL) - (TRIAL_S + train + checks + jacobian + flatness)) < 1e-12


def test_full_batch_and_penalties_scale_the_training_term():
    p, base = 586, estimate_seconds(SMALL)
    full = estimate_seconds(dataclasses.replace(SMALL, full_batch=True))
    assert abs((full - base) - 100 * 6 * (64 - 16) * p / FLOPS) < 1e-12  # n = n_train instead of the batch
    penalised = estimate_seconds(dataclasses.replace(SMALL, regularizer="jacobian", reg_strength=0.1))
    assert abs((penalised - base) - 100 * 6 * 16 * p * (2 * 10) / FLOPS) < 1e-12  # 2C more passes a step
    assert estimate_seconds(dataclasses.replace(SMALL, width=64)) > base
    assert estimate_seconds(dataclasses.replace(SMALL, max_steps=1000)) > base


def test_quick_trials_run_alone_and_smoke_trials_are_bundled():
    quick = [estimate_seconds(t.config) for t in sample(QUICK, {}, 0, 300).trials]
    smoke = [estimate_seconds(t.config) for t in sample(SMOKE, {}, 0, 300).trials]
    assert min(quick) >= ALONE_S  # the quick preset keeps one trial a Tune trial: no slower than unbundled
    assert max(smoke) < ALONE_S / 10
