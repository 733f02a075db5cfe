"""A small, plausible results directory written through study.records, for the analysis tests.

Values are random but shaped like the real thing: the gap grows with the Jacobian norm, transitions
grow with the number of neurons, per-point Jacobian norms follow Eq. 7 of docs/science.md with noise.
Test error (= the accuracy gap of a net that fits its training set) grows with the loss gap for
true-label nets; random-label nets are at chance (90% error over 10 classes).
"""

from __future__ import annotations

import datetime as dt
import itertools

import numpy as np
import pandas as pd

from study.config import TrialConfig
from study.schema import hp_record
from study.records import write_trial

KINDS = ("train_same_class", "train_diff_class", "test", "random")
PAIR_FACTORS = {"random_labels": (0.0, 1.0), "augment": (False, True)}
PAIR_SEEDS = {"random_labels": (3, 4), "augment": (5, 6)}  # distinct, so no net is in two pairs


def _record(cfg: TrialConfig, rng: np.random.Generator, when: dt.datetime, status: str = "ok",
            pair_id: str | None = None, factor: str | None = None) -> dict:
    n_classes, n_features = 10, (64 if cfg.dataset == "digits" else cfg.synthetic_dim)
    n_neurons = cfg.width * (cfg.depth - 1)
    jac = float(np.exp(rng.normal(np.log(0.3), 0.8) + 1.2 * cfg.random_labels))
    gap = float(max(0.02, 0.8 * jac + rng.normal(0, 0.1) + 1.5 * cfg.random_labels))
    transitions = float(max(1.0, np.round(0.8 * n_neurons ** 0.9 * np.exp(rng.normal(0, 0.3)))))
    train_acc = 1.0 if status == "ok" else 0.9
    test_acc = 0.1 if cfg.random_labels > 0 else round(1.0 - min(0.85, 0.05 + 0.2 * gap), 4)
    return {
        **hp_record(cfg), "trial_id": cfg.trial_id, "schema_version": 1, "status": status,
        "error": "RuntimeError: boom" if status == "error" else None,
        "pair_id": pair_id, "pair.factor": factor,
        "model.n_params": n_features * cfg.width + cfg.width * n_classes, "model.n_neurons": n_neurons,
        "data.n_features": n_features, "data.n_classes": n_classes, "train.steps": 100,
        "train.loss": 0.01, "train.accuracy": train_acc, "train.accuracy_true_labels": train_acc,
        "test.loss": 0.01 + gap, "test.accuracy": test_acc, "gap.loss": gap, "gap.accuracy": train_acc - test_acc,
        "measure.jacobian_test": jac, "measure.jacobian_train": jac * 0.5,
        "measure.logit_jacobian_test": 10 * jac, "measure.logit_jacobian_sq_test": float(rng.uniform(20, 80)),
        "measure.transitions_test": transitions, "measure.transitions_train": transitions * 0.9,
        "measure.transitions_random": transitions * 1.3,
        "time.total_s": float(rng.uniform(1, 5)), "time.train_s": 1.0, "env.device": "cpu",
        "created_at": pd.Timestamp(when),
    }


def _points(cfg: TrialConfig, record: dict, rng: np.random.Generator, n: int = 40) -> pd.DataFrame:
    n_classes = record["data.n_classes"]
    m = record["measure.logit_jacobian_sq_test"] / n_classes
    rows = []
    for split in ("train", "test"):
        loss = np.exp(rng.uniform(np.log(1e-5), np.log(6.0), size=n))
        p = np.exp(-loss)
        eq7 = np.sqrt(m) / (n_classes - 1) * (1 - p) * np.sqrt(n_classes ** 2 * p ** 2 + n_classes - 2)
        jac = eq7 * np.exp(rng.normal(0, 0.3, size=n))
        jac_y = np.sqrt(n_classes * m / (n_classes - 1)) * p * (1 - p) * np.exp(rng.normal(0.2, 0.2, size=n))
        rows.append(pd.DataFrame({"trial_id": cfg.trial_id, "split": split, "index": np.arange(n),
                                  "label": rng.integers(0, n_classes, n), "loss": loss, "correct": loss < np.log(2),
                                  "jacobian": jac, "logit_jacobian": np.sqrt(m * n_classes) * np.ones(n),
                                  "jacobian_y": jac_y}))
    return pd.concat(rows, ignore_index=True)


def _trajectories(cfg: TrialConfig, rng: np.random.Generator) -> pd.DataFrame:
    rows = []
    for kind, index in itertools.product(KINDS, range(2)):
        off = kind == "random"
        length = float(rng.uniform(5, 20) * (3 if off else 1))
        rows.append({"trial_id": cfg.trial_id, "kind": kind, "index": index,
                     "transitions": int(rng.poisson(cfg.width * (4 if off else 1))), "method": "exact",
                     "resolution": 100, "converged": True, "length": length,
                     "jacobian_mean": float(np.exp(rng.normal(np.log(0.05 if off else 0.3), 0.4))),
                     "jacobian_max": 1.0})
    return pd.DataFrame(rows)


def make_results(location: str, seed: int = 0, with_points: bool = True, with_trajectories: bool = True) -> list[str]:
    """Write 35 trials over 2 data sets (3 not fit/errored), with random-label and augmentation pairs.

    Returns the trial ids written."""
    rng = np.random.default_rng(seed)
    start = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.timezone.utc)
    configs: list[tuple[TrialConfig, str, str | None, str | None]] = []
    for dataset, nonlin, width, s in itertools.product(("digits", "synthetic"), ("relu", "tanh"), (8, 32, 128), (0, 1)):
        configs.append((TrialConfig(dataset=dataset, nonlinearity=nonlin, width=width, seed=s), "ok", None, None))
    for dataset, factor in itertools.product(("digits", "synthetic"), PAIR_FACTORS):
        for s, value in itertools.product(PAIR_SEEDS[factor], PAIR_FACTORS[factor]):
            pair = f"{dataset}-{factor}-{s}"
            configs.append((TrialConfig(dataset=dataset, width=32, seed=s, **{factor: value}), "ok", pair, factor))
    configs.append((TrialConfig(dataset="digits", width=4, seed=7), "not_fit", None, None))
    configs.append((TrialConfig(dataset="synthetic", width=4, seed=7), "not_fit", None, None))
    configs.append((TrialConfig(dataset="synthetic", width=2, seed=7), "error", None, None))
    ids = []
    for i, (cfg, status, pair, factor) in enumerate(configs):
        record = _record(cfg, rng, start + dt.timedelta(minutes=i), status, pair, factor)
        points = _points(cfg, record, rng) if with_points and status == "ok" else pd.DataFrame()
        trajectories = _trajectories(cfg, rng) if with_trajectories and status == "ok" else pd.DataFrame()
        write_trial(location, cfg.trial_id, record, points, trajectories)
        ids.append(cfg.trial_id)
    return ids
