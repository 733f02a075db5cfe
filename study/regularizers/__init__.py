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

f is the logits or the softmax (reg_target). Adding a regularizer touches its own module, the table
below, the settings it takes in study.config.validate, and one test.
"""

from __future__ import annotations

from typing import Callable

from study.config import ConfigError, TrialConfig
from study.regularizers.base import Regularizer
from study.regularizers.bias_jacobian import BiasJacobianPenalty
from study.regularizers.input_noise import InputNoise
from study.regularizers.jacobian import JacobianPenalty
from study.regularizers.jacobian_matching import JacobianMatching
from study.regularizers.jacobian_proj import ProjectedJacobianPenalty
from study.train import Penalty

PENALTIES: dict[str, Callable[[TrialConfig], Regularizer]] = {
    "jacobian": JacobianPenalty,
    "jacobian_proj": ProjectedJacobianPenalty,
    "bias_jacobian": BiasJacobianPenalty,
    "input_noise": InputNoise,
    "jacobian_matching": JacobianMatching,
}


def make_penalty(cfg: TrialConfig) -> Penalty | None:
    """The penalty of `cfg.regularizer`, configured from `cfg` (None for "none")."""
    if cfg.regularizer == "none":
        return None
    if cfg.regularizer not in PENALTIES:
        raise ConfigError(f"unknown regularizer {cfg.regularizer!r}; available: none, {', '.join(PENALTIES)}")
    return PENALTIES[cfg.regularizer](cfg)
