"""The nonlinearities a net may use: one entry each, and everything else (config validation, the torch
module, the transition count's exact or sampled walk, the memory estimate, the report's ReLU /
piecewise-linear split, the tests) reads this table. Adding a nonlinearity is one entry here.

An entry names the torch.nn module (with its arguments) and, for a piecewise-linear function, its kinks:
the pre-activation values where its slope changes. A smooth function has kinks None; its transitions
are counted by sampling each unit's sign (study.measures.transition_sampled). No torch import here, so
study.config stays light.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Nonlinearity:
    """One nonlinearity: torch.nn.<module>(**arguments), and its kinks (None: smooth)."""

    name: str
    module: str
    kinks: tuple[float, ...] | None
    arguments: dict[str, Any] = field(default_factory=dict)

    @property
    def piecewise_linear(self) -> bool:
        return self.kinks is not None

    def build(self):
        """A fresh torch module computing this nonlinearity."""
        from torch import nn

        return getattr(nn, self.module)(**self.arguments)


TABLE: dict[str, Nonlinearity] = {n.name: n for n in (
    Nonlinearity("relu", "ReLU", (0.0,)),
    Nonlinearity("relu6", "ReLU6", (0.0, 6.0)),
    Nonlinearity("tanh", "Tanh", None),
    Nonlinearity("hardtanh", "Hardtanh", (-1.0, 1.0)),
    Nonlinearity("hardsigmoid", "Hardsigmoid", (-3.0, 3.0)),  # torch: relu6(x + 3) / 6
    Nonlinearity("leaky_relu", "LeakyReLU", (0.0,), {"negative_slope": 0.01}),
    Nonlinearity("sigmoid", "Sigmoid", None),
    Nonlinearity("softplus", "Softplus", None),
)}

NAMES: tuple[str, ...] = tuple(TABLE)
KINKS: dict[str, tuple[float, ...] | None] = {name: n.kinks for name, n in TABLE.items()}
