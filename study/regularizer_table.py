"""The regularizers a trial may train with: one entry each, and everything else (config validation,
study.regularizers.make_penalty, the regularizers preset's L-BFGS exclusions, the report's order) reads
this table. Adding a regularizer is its module under study/regularizers/, one entry here, and its test.

An entry names the class that implements it ("module:Class" under study.regularizers) and the settings it
takes; a setting a regularizer does not take must stay at its default, so that it cannot split trial
ids without changing what is trained. No torch import here, so study.config stays light.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass


@dataclass(frozen=True)
class RegularizerSpec:
    """One regularizer: where it lives and which settings it takes."""

    name: str
    implementation: str  # "module:Class" under study.regularizers
    strength: bool  # takes reg_strength (lambda)
    target: bool  # takes reg_target (logits or softmax)
    noise: bool  # takes noise_std
    projections: bool = False  # takes reg_projections
    stochastic: bool = False  # fresh randomness at every loss evaluation: breaks L-BFGS's line search

    def load(self):
        """The class implementing this regularizer."""
        module, _, name = self.implementation.partition(":")
        return getattr(importlib.import_module(f"study.regularizers.{module}"), name)


TABLE: dict[str, RegularizerSpec] = {r.name: r for r in (
    RegularizerSpec("jacobian", "jacobian:JacobianPenalty", strength=True, target=True, noise=False),
    RegularizerSpec("jacobian_proj", "jacobian_proj:ProjectedJacobianPenalty", strength=True, target=True,
                    noise=False, projections=True, stochastic=True),
    RegularizerSpec("bias_jacobian", "bias_jacobian:BiasJacobianPenalty", strength=True, target=True,
                    noise=False),
    RegularizerSpec("input_noise", "input_noise:InputNoise", strength=False, target=False, noise=True,
                    stochastic=True),
    RegularizerSpec("jacobian_matching", "jacobian_matching:JacobianMatching", strength=True, target=True,
                    noise=True),
)}
NAMES = ("none", *TABLE)  # "none": train without a regularizer


def taking(setting: str) -> tuple[str, ...]:
    """Names of the regularizers that take `setting` (strength, target, noise, projections, stochastic)."""
    return tuple(name for name, spec in TABLE.items() if getattr(spec, setting))
