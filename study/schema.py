"""The three result tables and their versioned Arrow schemas: what a record holds, not where it lives
(study.records). A trials row has fixed columns (ids, the net's size, training steps, times, where it ran),
hp.<every TrialConfig field>, and the columns each measure declares when it registers (study.measures);
points and trajectories rows have their key columns and the measures' columns.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import pandas as pd
import pyarrow as pa

from study.config import TrialConfig

SCHEMA_VERSION = 1
TABLES = ("trials", "points", "trajectories")
STATUSES = ("ok", "not_fit", "diverged", "error")  # a trial row's status, in the order summaries list them

ARROW_TYPES = {"int": pa.int64(), "float": pa.float64(), "bool": pa.bool_(), "str": pa.string()}

# The trials table's own columns: those before the measures' columns, then those after.
TRIAL_HEAD: dict[str, pa.DataType] = {
    "trial_id": pa.string(),
    "schema_version": pa.int32(),
    "status": pa.string(),
    "error": pa.string(),
    "pair_id": pa.string(),  # the pairs preset: the two trials of a pair share it
    "pair.factor": pa.string(),  # the one hp field in which they differ
    "twin_id": pa.string(),  # an intervention preset (regularizers): the trial_id of the group's untreated twin
    "twin.factor": pa.string(),  # the hp field the intervention varies
    "model.n_params": pa.int64(),
    "model.n_neurons": pa.int64(),
    "model.init_sha256": pa.string(),  # study.weights.model_sha256 of the net at initialization
    "data.n_features": pa.int64(),
    "data.n_classes": pa.int64(),
    "train.steps": pa.int64(),
}
TRIAL_TAIL: dict[str, pa.DataType] = {
    "time.data_s": pa.float64(),
    "time.train_s": pa.float64(),
    "time.measure_s": pa.float64(),
    "time.total_s": pa.float64(),
    "env.device": pa.string(),
    "env.torch": pa.string(),
    "env.threads": pa.int64(),  # torch threads the trial ran with
    "env.pack_size": pa.int64(),  # nets trained together (study.packed); 1: alone
    "env.node": pa.string(),  # Ray node id of the worker that ran the trial (hostname outside Ray)
    "env.worker": pa.string(),  # hostname:pid of that worker process
    "sweep.id": pa.string(),  # sweeps.sampling.sweep_id of the sweep that asked for the trial
    "created_at": pa.timestamp("us", tz="UTC"),
}
POINT_KEY: dict[str, pa.DataType] = {
    "trial_id": pa.string(),
    "split": pa.string(),  # "train" | "test"
    "index": pa.int64(),  # row of the split in load_dataset(cfg)
}
TRAJECTORY_KEY: dict[str, pa.DataType] = {
    "trial_id": pa.string(),
    "kind": pa.string(),  # train_same_class | train_diff_class | test | random | translation
    "index": pa.int64(),  # which trajectory of its kind
}


def _declared(table: str) -> dict[str, pa.DataType]:
    """The measures' columns of `table`; for trials, then the version of each measure (version.<name>)."""
    # imported late: the measures import the data, which write through records, which import this module
    from study.measures import MEASURES, declared_columns, version_column

    found = {name: ARROW_TYPES[kind] for name, kind in declared_columns(table).items()}
    if table == "trials":
        found.update({version_column(name): pa.int64() for name in MEASURES})
    return found


def hp_columns() -> dict[str, pa.DataType]:
    return {f"hp.{f.name}": ARROW_TYPES[f.type] for f in fields(TrialConfig)}


def columns(table: str) -> dict[str, pa.DataType]:
    """Name -> Arrow type of every column of `table`, in order."""
    if table == "trials":
        return {**TRIAL_HEAD, **_declared("trials"), **TRIAL_TAIL, **hp_columns()}
    if table == "points":
        return {**POINT_KEY, **_declared("points")}
    if table == "trajectories":
        return {**TRAJECTORY_KEY, **_declared("trajectories")}
    raise ValueError(f"unknown table {table!r}; tables: {', '.join(TABLES)}")


def table_schema(table: str) -> pa.Schema:
    """The explicit Arrow schema of one table (trials include hp.<every TrialConfig field>)."""
    return pa.schema([pa.field(name, kind) for name, kind in columns(table).items()],
                     metadata={b"schema_version": str(SCHEMA_VERSION).encode()})


# A measure computed after its trial (study.remeasure) writes its own three parts, each keyed like the table
# it joins: the row's key, the measure's version, what it ran on, then the measure's declared columns.
MEASURE_HEAD: dict[str, pa.DataType] = {
    "trial_id": pa.string(),
    "measure": pa.string(),
    "version": pa.int64(),
    "time.measure_s": pa.float64(),
    "env.device": pa.string(),
    "env.torch": pa.string(),
    "env.threads": pa.int64(),
    "created_at": pa.timestamp("us", tz="UTC"),
}
KEYS = {"trials": {"trial_id": pa.string()}, "points": POINT_KEY, "trajectories": TRAJECTORY_KEY}


def measure_part_schema(name: str, table: str) -> pa.Schema:
    """The schema of measure `name`'s part of `table` (measures/<name>-v<k>/<table>/<trial_id>.parquet)."""
    from study.measures import COLUMNS

    if name not in COLUMNS:
        raise ValueError(f"unknown measure {name!r}")
    head = MEASURE_HEAD if table == "trials" else KEYS[table]
    own = {column: ARROW_TYPES[kind] for column, kind in COLUMNS[name][table].items()}
    return pa.schema([pa.field(n, t) for n, t in {**head, **own}.items()],
                     metadata={b"schema_version": str(SCHEMA_VERSION).encode()})


def hp_record(cfg: TrialConfig) -> dict[str, Any]:
    return {f"hp.{k}": v for k, v in cfg.canonical().items()}


def config_from_record(row: Any, **reset: Any) -> TrialConfig:
    """The TrialConfig a trials row records (the inverse of hp_record): its hp.* columns, null or missing ones
    (an older record) taking their defaults, then the `reset` fields replaced. `row`: a dict or pandas Series."""
    values = {}
    for name in TrialConfig.field_names():
        value = row.get(f"hp.{name}")
        if value is None or (not isinstance(value, str) and pd.isna(value)):
            continue
        values[name] = value.item() if hasattr(value, "item") else value
    return TrialConfig.from_dict({**values, **reset})


def _plain(value: Any) -> Any:
    """A cell as pyarrow takes it: numpy scalars as Python ones, NaN as null."""
    if hasattr(value, "item") and not isinstance(value, (list, dict, str, bytes)):
        value = value.item()
    return None if isinstance(value, float) and value != value else value


def to_table(table: str, rows: pd.DataFrame | list[dict[str, Any]], schema: pa.Schema | None = None) -> pa.Table:
    """Rows conformed to the table's schema (or `schema`): missing columns become nulls, NaN becomes null,
    extra columns are an error. A list of dicts goes to Arrow directly (a trial row through a one-row
    DataFrame cost 5 ms, a third of writing a smoke trial)."""
    schema = table_schema(table) if schema is None else schema
    if isinstance(rows, pd.DataFrame):
        names, n = list(rows.columns), len(rows)
        column = lambda name: rows[name].tolist()  # noqa: E731
    else:
        names, n = list(dict.fromkeys(k for row in rows for k in row)), len(rows)
        column = lambda name: [row.get(name) for row in rows]  # noqa: E731
    extra = sorted(set(names) - set(schema.names))
    if extra:
        raise ValueError(f"columns not in the {table} schema: {extra}")
    present = set(names)
    arrays = [pa.array([_plain(v) for v in column(fld.name)], type=fld.type) if fld.name in present
              else pa.nulls(n, type=fld.type) for fld in schema]
    return pa.Table.from_arrays(arrays, schema=schema)
