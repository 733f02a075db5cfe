"""Measures, one module each, registered by name.

A measure is a function `MeasureContext -> MeasureOutput`. Its `record` entries become columns of
the trial row (`measure.*`), its `points` rows are merged on (split, index) into the points table,
and its `trajectories` rows are appended to the trajectories table. Adding a measure touches its
own module, the import list below and one test.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import pandas as pd
import torch

from study.config import TrialConfig
from study.data import Dataset


@dataclass
class MeasureContext:
    cfg: TrialConfig
    model: torch.nn.Module  # trained, eval mode, on `device`; measures must not change it
    data: Dataset  # on `device`
    device: torch.device
    chunk_size: int = 1024  # points per batched computation (bounds memory)
    _logits: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)

    def logits(self, split: str) -> torch.Tensor:
        """h(x) on every "train" or "test" point [n, C], computed once per context and shared by the measures."""
        if split not in self._logits:
            x = {"train": self.data.x_train, "test": self.data.x_test}[split]
            with torch.no_grad():
                self._logits[split] = torch.cat([self.model(x[lo:lo + self.chunk_size])
                                                 for lo in range(0, x.shape[0], self.chunk_size)])
        return self._logits[split]


@dataclass
class MeasureOutput:
    record: dict[str, float | int | None] = field(default_factory=dict)
    points: pd.DataFrame | None = None
    trajectories: pd.DataFrame | None = None


Measure = Callable[[MeasureContext], MeasureOutput]
MEASURES: dict[str, Measure] = {}


def register(name: str) -> Callable[[Measure], Measure]:
    def wrap(fn: Measure) -> Measure:
        MEASURES[name] = fn
        return fn
    return wrap


def _load_all() -> None:
    # Imported for their @register side effect; the order is the order in which measures run.
    from study.measures import pointwise, gap, jacobian, transitions, baselines  # noqa: F401


_load_all()
