"""How long a trial may take, from its config alone: an upper bound in seconds of one CPU core.

A trial stops at 100% train accuracy, which no config predicts, so the bound counts every step up to
max_steps. With P parameters, C classes, n points a training step (n_train with L-BFGS or full batch),
a penalty costing R passes a step (1 without one), n_eval = max_steps / eval_every accuracy checks:

    seconds = TRIAL_S + max_steps (STEP_S + 6 n P R / FLOPS)          training, forward and backward
              + n_eval n_train 2 P / FLOPS                             the train-accuracy checks
              + (n_train + n_test) 2 P (1 + 2 C) / FLOPS               the Jacobian norms (C backward passes)
              + 2 flatness.STEPS flatness.SAMPLES min(n_train, 512) 2 P / FLOPS   the PAC-Bayes pair

TRIAL_S (the measures' and records' fixed cost) and STEP_S (an optimizer step's Python and dispatch cost)
were fit on smoke trials, FLOPS on quick ones (one thread of this project's 2-core machine; benchmarks/
RESULTS.md): a smoke trial is bounded by 0.06 s (measured 0.05-0.08 s), a quick one by 5-40 s (measured
0.6-6 s: most stop well before max_steps). The sweep uses it to decide how many trials one Tune trial
runs (sweeps.units.cost_groups), scaled by the speed it measures on its recorded trials (speed_factor).
"""

from __future__ import annotations

from study.config import TrialConfig, step_points
from study.datasets import N_CLASSES
from study.measures import flatness_search
from study.models import count_parameters
from study.resources import n_features

TRIAL_S = 0.035  # a trial's fixed cost: data split, measures' setup, the record
STEP_S = 3e-4  # an optimizer step's cost beyond its arithmetic (Python, dispatch)
FLOPS = 5e10  # float32 multiply-adds x 2 a second, one core (dense matmuls of the study's widths)


def penalty_passes(cfg: TrialConfig) -> float:
    """R: a training step's cost with the config's regularizer over one without (forward + backward = 1)."""
    c = N_CLASSES[cfg.dataset]
    return {"jacobian": 1 + 2 * c, "jacobian_matching": 1 + 4 * c, "jacobian_proj": 1 + 2 * cfg.reg_projections,
            "bias_jacobian": 4.0, "input_noise": 1.0}.get(cfg.regularizer, 1.0)


def estimate_seconds(cfg: TrialConfig) -> float:
    """An upper bound on the trial's seconds on one CPU core (the module's formula)."""
    d, c = n_features(cfg), N_CLASSES[cfg.dataset]
    p = count_parameters(d, cfg.width, cfg.depth, c)
    n = step_points(cfg, cfg.n_train)
    train = cfg.max_steps * (STEP_S + 6 * n * p * penalty_passes(cfg) / FLOPS)
    checks = cfg.max_steps / max(1, cfg.eval_every) * cfg.n_train * 2 * p / FLOPS
    jacobian = (cfg.n_train + cfg.n_test) * 2 * p * (1 + 2 * c) / FLOPS
    flat = 2 * flatness_search.STEPS * flatness_search.SAMPLES * min(cfg.n_train, flatness_search.MAX_POINTS) * 2 * p
    return TRIAL_S + train + checks + jacobian + flat / FLOPS
