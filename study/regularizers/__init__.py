"""Jacobian-based regularizers as training penalties (docs/science.md, section 4), one module each.

`make_penalty(cfg)` returns None for `regularizer="none"`, else a callable
`penalty(model, x, y, logits) -> scalar tensor` that study.train adds to the mean cross-entropy of
every batch (with the optional hooks described in study.regularizers.base):

    jacobian           (lambda/2) E_x ||d f/dx||_F^2, exact (C vector-Jacobian products)
    jacobian_proj      the same, unbiased, from reg_projections random unit directions per point
    bias_jacobian      (lambda/2) E_x sum_l ||grad_{b_l} f ⊙ b_l||^2, f the label's output
    input_noise        train on x + N(0, noise_std^2 I)
    jacobian_matching  (lambda/2) E_x [||T - S||^2 + noise_std^2 ||J_T - J_S||_F^2], teacher = the
                       same trial without regularizer

f is the logits or the softmax (reg_target). Adding a regularizer is its own module here, one entry in
study.regularizer_table (its class and the settings it takes), and one test.
"""

from __future__ import annotations

from typing import Callable

from study.config import ConfigError, TrialConfig
from study.regularizer_table import TABLE
from study.regularizers.base import Regularizer
from study.train import Penalty


def penalty_class(name: str) -> Callable[[TrialConfig], Regularizer]:
    """The class of regularizer `name` (study.regularizer_table)."""
    return TABLE[name].load()


def make_penalty(cfg: TrialConfig) -> Penalty | None:
    """The penalty of `cfg.regularizer`, configured from `cfg` (None for "none")."""
    if cfg.regularizer == "none":
        return None
    if cfg.regularizer not in TABLE:
        raise ConfigError(f"unknown regularizer {cfg.regularizer!r}; available: none, {', '.join(TABLE)}")
    return penalty_class(cfg.regularizer)(cfg)
