"""Measures, one module each, registered by name.

A measure is a function `MeasureContext -> MeasureOutput`, registered with the columns it writes:

    @register("name", version=1, record={"measure.name_test": "float"}, points={"name": "float"})
    def measure(ctx): ...

Its `record` entries become columns of the trial row, its `points` rows are merged on (split, index)
into the points table, and its `trajectories` rows are appended to the trajectories table; study.schema
builds the three tables' schemas from these declarations. Every module of this package is imported,
in name order (a module another one imports registers first); the measures run in the order they
registered. Adding a measure is one module and its test.

A measure has a version (default 1): bump it when a change alters its values. The trial row records the
version that computed each measure's values (`version.<name>`), and `sensitivity measure DIR` recomputes,
from the kept nets, the measures whose values are missing or older (study.remeasure). Measures outside this
package register the same way: name their modules in SENSITIVITY_MEASURES (comma-separated, importable
in every process of a sweep, Ray's workers included) and every process imports them once `study` is
imported (load_plugins).
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import warnings
from dataclasses import dataclass, field
from typing import Callable

import pandas as pd
import torch

from study.config import ConfigError, TrialConfig
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
VERSIONS: dict[str, int] = {}  # measure -> its version
PLUGIN_ENV = "SENSITIVITY_MEASURES"  # modules of measures outside this package, comma-separated
PLUGIN_ERRORS: list[str] = []  # one line per plugin module that failed to import


def register(name: str, record: Columns | None = None, points: Columns | None = None,
             trajectories: Columns | None = None, version: int = 1) -> Callable[[Measure], Measure]:
    """Register a measure under `name`, at `version`, with the columns it writes to each table."""
    if not name.isidentifier() or not isinstance(version, int) or version < 1:
        raise ValueError(f"a measure needs an identifier for a name and a version >= 1, got {name!r}, {version!r}")

    def wrap(fn: Measure) -> Measure:
        if name in MEASURES:
            raise ValueError(f"measure {name!r} registered twice")
        MEASURES[name] = fn
        VERSIONS[name] = version
        COLUMNS[name] = {"trials": dict(record or {}), "points": dict(points or {}),
                         "trajectories": dict(trajectories or {})}
        return fn
    return wrap


def unregister(name: str) -> None:
    """Forget a registered measure (a test's, or a plugin's being reloaded)."""
    for table in (MEASURES, VERSIONS, COLUMNS):
        table.pop(name, None)


def version_column(name: str) -> str:
    """The trials column holding the version of measure `name` that computed the row's values."""
    return f"version.{name}"


def declared_columns(table: str) -> Columns:
    """The columns the registered measures write to `table`, in the order they run; one owner per column."""
    found: Columns = {}
    for name, tables in COLUMNS.items():
        for column, kind in tables[table].items():
            if column in found:
                raise ValueError(f"column {column!r} of {table} declared by two measures (one is {name!r})")
            found[column] = kind
    return found


def parse_names(text: str | None, flag: str) -> list[str] | None:
    """A command line's comma-separated measure names (None where the flag was not given), each registered;
    ConfigError naming `flag` and the first unknown one."""
    if text is None:
        return None
    names = list(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    if not names:
        raise ConfigError(f"{flag} is empty; give measure names separated by commas")
    unknown = [n for n in names if n not in MEASURES]
    if unknown:
        raise ConfigError(f"{flag}: unknown measure {unknown[0]!r}; registered: {', '.join(MEASURES)} "
                          f"(a measure outside study/measures needs its module in ${PLUGIN_ENV})")
    return names


def _load_all() -> None:
    """Import every module of this package: each registers its measures (helpers register none)."""
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")


def load_plugins() -> None:
    """Import the modules SENSITIVITY_MEASURES names (each registers its measures). Called once the study
    package is initialized (study/__init__.py), so a plugin may import any of it. One that fails to import is
    a warning here and in PLUGIN_ERRORS, which the `sensitivity` command refuses to run with."""
    for module in filter(None, (m.strip() for m in os.environ.get(PLUGIN_ENV, "").split(","))):
        try:
            importlib.import_module(module)
        except Exception as exc:  # noqa: BLE001 -- any error of the plugin's own code, said in one line
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            PLUGIN_ERRORS.append(f"{PLUGIN_ENV} names {module!r}, which cannot be imported: "
                                 f"{type(exc).__name__}: {first}")
            warnings.warn(PLUGIN_ERRORS[-1], stacklevel=2)


_load_all()
