"""Jacobian-based regularizers as training penalties (issue: regularizers as sweep factors).

`make_penalty(cfg)` returns None for `regularizer="none"`, else a function
`penalty(model, x, y, logits) -> scalar tensor` added to the cross-entropy by study.train.
"""

from __future__ import annotations

from study.config import ConfigError, TrialConfig
from study.train import Penalty

PENALTIES: dict[str, object] = {}


def make_penalty(cfg: TrialConfig) -> Penalty | None:
    if cfg.regularizer == "none":
        return None
    if cfg.regularizer not in PENALTIES:
        raise ConfigError(f"regularizer {cfg.regularizer!r} is not available yet; available: none")
    return PENALTIES[cfg.regularizer](cfg)
