"""Measures, one module each, registered by name.

A measure is a function `MeasureContext -> MeasureOutput`, registered with the columns it writes:

    @register("name", record={"measure.name_test": "float"}, points={"name": "float"})
    def measure(ctx): ...

Its `record` entries become columns of the trial row, its `points` rows are merged on (split, index)
into the points table, and its `trajectories` rows are appended to the trajectories table; study.schema
builds the three tables' schemas from these declarations. Every module of this package is imported,
in name order (a module another one imports registers first); the measures run in the order they
registered. Adding a measure is one module and its test.
"""

from __future__ import annotations

import importlib
import pkgutil
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
Columns = dict[str, str]  # column name -> "float" | "int" | "bool" | "str"
MEASURES: dict[str, Measure] = {}
COLUMNS: dict[str, dict[str, Columns]] = {}  # measure -> table -> the columns it writes there


def register(name: str, record: Columns | None = None, points: Columns | None = None,
             trajectories: Columns | None = None) -> Callable[[Measure], Measure]:
    """Register a measure under `name` with the columns it writes to each table."""
    def wrap(fn: Measure) -> Measure:
        if name in MEASURES:
            raise ValueError(f"measure {name!r} registered twice")
        MEASURES[name] = fn
        COLUMNS[name] = {"trials": dict(record or {}), "points": dict(points or {}),
                         "trajectories": dict(trajectories or {})}
        return fn
    return wrap


def declared_columns(table: str) -> Columns:
    """The columns the registered measures write to `table`, in the order they run; one owner per column."""
    found: Columns = {}
    for name, tables in COLUMNS.items():
        for column, kind in tables[table].items():
            if column in found:
                raise ValueError(f"column {column!r} of {table} declared by two measures (one is {name!r})")
            found[column] = kind
    return found


def _load_all() -> None:
    """Import every module of this package: each registers its measures (helpers register none)."""
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")


_load_all()
