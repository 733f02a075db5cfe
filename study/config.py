"""TrialConfig: everything that changes a trial's numbers, frozen and hashed into `trial_id`.

How a trial runs (device, threads, output directory, data root) is *not* here and never enters
the hash. Seeds derive from the config (`TrialConfig.seed_for`), so the
same config gives the same numbers; two configs that differ only in, say, `lr` share their data
subset, label noise and initial weights, which is what paired comparisons need.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, fields
from typing import Any

from study.datasets import NAMES as DATASET_NAMES
from study.nonlinearities import NAMES as NONLINEARITY_NAMES
from study.regularizer_table import NAMES as REGULARIZER_NAMES, taking

# Bump when a change to the code changes what a given config computes: it enters the hash.
ALGORITHM_VERSION = 1

DATASETS = DATASET_NAMES  # the table in study.datasets
NONLINEARITIES = NONLINEARITY_NAMES  # the table in study.nonlinearities
OPTIMIZERS = ("sgd", "momentum", "adam", "rmsprop", "lbfgs")
STANDARDIZATIONS = ("none", "global", "per_pixel")
REGULARIZERS = REGULARIZER_NAMES  # the table in study.regularizer_table
REG_TARGETS = ("logits", "softmax")


class ConfigError(ValueError):
    """A bad setting, reported to the user as one line before any work starts."""


@dataclass(frozen=True)
class TrialConfig:
    """One trial of the study. Every field has a default; `TrialConfig(dataset="synthetic")` runs in seconds."""

    # data
    dataset: str = "synthetic"
    n_train: int = 1000
    n_test: int = 1000
    standardize: str = "global"  # none | global (per-pixel mean, one global std) | per_pixel
    random_labels: float = 0.0  # fraction of training labels replaced by uniform random labels
    augment: bool = False  # random translations by up to `augment_shift` pixels (+ flips on CIFAR)
    augment_shift: int = 2
    synthetic_dim: int = 32  # input dimension of the `synthetic` data set
    # model
    width: int = 64
    depth: int = 3  # number of weight layers (the study's grid: 2, 3, 5, ..., 65)
    nonlinearity: str = "relu"
    init_scale: float = 1.0  # weight std = init_scale / sqrt(fan_in)
    # optimization
    optimizer: str = "adam"
    lr: float = 0.001
    batch_size: int = 128
    full_batch: bool = False
    max_steps: int = 5000
    eval_every: int = 100  # check accuracy on the whole train set every this many steps
    target_accuracy: float = 1.0  # stop once train accuracy reaches this (the study: 1.0; 0.999 on CIFAR100)
    # regularization (study/regularizers; each setting is refused where it has no effect)
    regularizer: str = "none"
    reg_strength: float = 0.0  # lambda of the penalty (lambda/2) E_x[...]; > 0 for every regularizer but input_noise
    reg_target: str = "logits"  # outputs the Jacobian penalties differentiate: logits | softmax
    reg_projections: int = 1  # random projections per step (jacobian_proj only)
    noise_std: float = 0.0  # input_noise: std of the noise; jacobian_matching: s in the s^2 Jacobian term
    # measures
    n_trajectories: int = 2  # trajectories per kind for the transitions measure
    trajectory_points: int = 64  # points per trajectory at which the Jacobian norm is averaged
    transition_samples: int = 16384  # sampling cap for smooth nonlinearities (piecewise-linear nets are exact)
    seed: int = 0

    def __post_init__(self) -> None:
        validate(self)

    # -- identity -------------------------------------------------------------------------
    def canonical(self) -> dict[str, Any]:
        """The config as a plain dict with sorted keys: what the trial id hashes."""
        return {f.name: getattr(self, f.name) for f in sorted(fields(self), key=lambda f: f.name)}

    @property
    def trial_id(self) -> str:
        """Stable 16-hex-digit id: sha256 of the canonical JSON form plus ALGORITHM_VERSION."""
        payload = json.dumps({"v": ALGORITHM_VERSION, "config": self.canonical()}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def seed_for(self, purpose: str, *keys: str) -> int:
        """A 63-bit seed for one purpose, derived from `seed` and the named fields only.

        E.g. the data subset depends on (dataset, n_train, n_test, seed), so configs that differ
        in optimizer or width train on the same points."""
        parts = [purpose, str(self.seed)] + [f"{k}={getattr(self, k)!r}" for k in keys]
        digest = hashlib.sha256("|".join(parts).encode()).digest()
        return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)

    def replace(self, **changes: Any) -> "TrialConfig":
        return dataclasses.replace(self, **changes)

    # -- construction from strings (CLI, sweeps) --------------------------------------------
    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrialConfig":
        unknown = sorted(set(values) - set(cls.field_names()))
        if unknown:
            raise ConfigError(f"unknown field {unknown[0]!r}; known fields: {', '.join(cls.field_names())}")
        return cls(**{k: coerce(k, v) for k, v in values.items()})


_TYPES = {f.name: f.type for f in fields(TrialConfig)}
REGULARIZER_FIELDS = ("regularizer", "reg_strength", "reg_target", "reg_projections", "noise_std")
# The regularizer fields at their defaults: what a regularized trial's unregularized twin (and a
# jacobian_matching teacher) has.
UNREGULARIZED = {f.name: f.default for f in fields(TrialConfig) if f.name in REGULARIZER_FIELDS}


def step_points(cfg: TrialConfig, n: int) -> int:
    """Training points one step of `cfg` sees out of `n`: all of them with L-BFGS, full_batch or a batch of at
    least n; batch_size otherwise."""
    return n if cfg.full_batch or cfg.optimizer == "lbfgs" or cfg.batch_size >= n else cfg.batch_size


def coerce(name: str, value: Any) -> Any:
    """Convert a value (often a string from the command line) to the type of field `name`."""
    if name not in _TYPES:
        raise ConfigError(f"unknown field {name!r}; known fields: {', '.join(TrialConfig.field_names())}")
    kind = _TYPES[name]
    try:
        if kind == "bool":
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if kind == "int":
            if isinstance(value, bool):
                raise ValueError
            number = float(value)
            if not number.is_integer():
                raise ValueError
            return int(number)
        if kind == "float":
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be of type {kind}, got {value!r}") from None


def parse_assignment(text: str) -> tuple[str, str]:
    """Split 'field=value' (from --set) into its two parts."""
    if "=" not in text:
        raise ConfigError(f"--set takes FIELD=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    key = key.strip()
    if key not in _TYPES:
        raise ConfigError(f"unknown field {key!r}; known fields: {', '.join(TrialConfig.field_names())}")
    return key, value.strip()


def _choice(cfg: TrialConfig, name: str, allowed: tuple[str, ...]) -> None:
    value = getattr(cfg, name)
    if value not in allowed:
        raise ConfigError(f"unknown {name} {value!r}; allowed: {', '.join(allowed)}")


def _at_least(cfg: TrialConfig, name: str, low: float, what: str = "") -> None:
    value = getattr(cfg, name)
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not value >= low:
        raise ConfigError(f"{name} must be {what or f'>= {low}'}, got {value!r}")


def validate(cfg: TrialConfig) -> None:
    """Refuse impossible settings with a one-line ConfigError naming what is allowed."""
    for name, kind in _TYPES.items():
        value = getattr(cfg, name)
        ok = {"int": isinstance(value, int) and not isinstance(value, bool),
              "float": isinstance(value, (int, float)) and not isinstance(value, bool),
              "bool": isinstance(value, bool), "str": isinstance(value, str)}[kind]
        if not ok:
            raise ConfigError(f"{name} must be of type {kind}, got {value!r}")
    _choice(cfg, "dataset", DATASETS)
    _choice(cfg, "nonlinearity", NONLINEARITIES)
    _choice(cfg, "optimizer", OPTIMIZERS)
    _choice(cfg, "standardize", STANDARDIZATIONS)
    _choice(cfg, "regularizer", REGULARIZERS)
    _choice(cfg, "reg_target", REG_TARGETS)
    _at_least(cfg, "width", 1, "a positive integer")
    _at_least(cfg, "depth", 2, "at least 2 (weight layers; depth 2 is one hidden layer)")
    _at_least(cfg, "n_train", 1, "a positive integer")
    _at_least(cfg, "n_test", 1, "a positive integer")
    _at_least(cfg, "synthetic_dim", 1, "a positive integer")
    _at_least(cfg, "batch_size", 1, "a positive integer")
    _at_least(cfg, "max_steps", 1, "a positive integer")
    _at_least(cfg, "eval_every", 1, "a positive integer")
    _at_least(cfg, "augment_shift", 0, "a non-negative integer")
    _at_least(cfg, "reg_projections", 1, "a positive integer")
    _at_least(cfg, "n_trajectories", 0, "a non-negative integer")
    _at_least(cfg, "trajectory_points", 1, "a positive integer")
    _at_least(cfg, "transition_samples", 1024, "at least 1024")
    _at_least(cfg, "seed", 0, "a non-negative integer")
    for name in ("lr", "init_scale"):
        value = getattr(cfg, name)
        if not value > 0 or value != value or value == float("inf"):
            raise ConfigError(f"{name} must be a positive finite number, got {value!r}")
    for name in ("reg_strength", "noise_std"):
        value = getattr(cfg, name)
        if not value >= 0 or value == float("inf"):
            raise ConfigError(f"{name} must be a non-negative finite number, got {value!r}")
    if not 0.0 <= cfg.random_labels <= 1.0:
        raise ConfigError(f"random_labels must be a fraction in [0, 1], got {cfg.random_labels!r}")
    if not 0.0 < cfg.target_accuracy <= 1.0:
        raise ConfigError(f"target_accuracy must be in (0, 1], got {cfg.target_accuracy!r}")
    _regularizer_settings(cfg)


STRENGTH_REGULARIZERS = taking("strength")  # take reg_strength
TARGET_REGULARIZERS = taking("target")  # take reg_target
NOISE_REGULARIZERS = taking("noise")  # take noise_std
PROJECTION_REGULARIZERS = taking("projections")  # take reg_projections
STOCHASTIC_REGULARIZERS = taking("stochastic")  # fresh randomness at every loss evaluation


def _regularizer_settings(cfg: TrialConfig) -> None:
    """Each regularizer setting must act: a setting without effect would only split trial ids."""
    reg = cfg.regularizer
    if reg == "none" and cfg.reg_strength != 0.0:
        raise ConfigError("reg_strength needs a regularizer; set regularizer to one of "
                          + ", ".join(STRENGTH_REGULARIZERS))
    if reg in STRENGTH_REGULARIZERS and cfg.reg_strength == 0.0:
        raise ConfigError(f"regularizer {reg} needs reg_strength > 0 (at 0 it trains the same net as regularizer=none)")
    if reg == "input_noise" and cfg.reg_strength != 0.0:
        raise ConfigError("input_noise is set by noise_std alone; leave reg_strength at 0")
    if reg in NOISE_REGULARIZERS and cfg.noise_std == 0.0:
        raise ConfigError(f"regularizer {reg} needs noise_std > 0 (the std of the Gaussian input noise)")
    if reg not in NOISE_REGULARIZERS and cfg.noise_std != 0.0:
        raise ConfigError(f"noise_std applies only to regularizer {' or '.join(NOISE_REGULARIZERS)}; "
                          f"leave it at 0 with regularizer {reg}")
    if reg not in TARGET_REGULARIZERS and cfg.reg_target != "logits":
        raise ConfigError(f"reg_target applies only to regularizer {', '.join(TARGET_REGULARIZERS)}; "
                          f"leave it at 'logits' with regularizer {reg}")
    if reg not in PROJECTION_REGULARIZERS and cfg.reg_projections != 1:
        raise ConfigError(f"reg_projections applies only to regularizer {' or '.join(PROJECTION_REGULARIZERS)}; "
                          f"leave it at 1 with regularizer {reg}")
    if reg in STOCHASTIC_REGULARIZERS and cfg.optimizer == "lbfgs":
        raise ConfigError(f"regularizer {reg} draws new randomness at every loss evaluation, which breaks L-BFGS's "
                          "line search; use regularizer jacobian (exact) or another optimizer")
