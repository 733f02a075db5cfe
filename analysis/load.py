"""Load the three result tables back from Parquet, robustly; filter the trials the science uses.

A results location (a local directory or an `s3://bucket/prefix` URI, see `study.records`) holds
one file per trial and table: `<location>/<table>/<trial_id>.parquet`. Loading reads every file
of a table, conforms it to the table's current schema (`study.schema.table_schema`) and
concatenates them. Rules, chosen so that a half-written or partly foreign directory never stops
an analysis:

- Names starting with '.' or '_' are ignored silently: temporary files of the atomic writer
  (`.tmp-*`) and markers such as `_SUCCESS`.
- Any other file that cannot be read as Parquet (corrupt, truncated, foreign, a name not ending
  in `.parquet`) is skipped with a `warnings.warn` naming it; so is a file whose columns cannot be
  cast to the schema's types.
- Files of an older schema version load: a column the file lacks becomes null; a column the
  schema does not know is dropped (`keep_extra=True` keeps it, with the type found in the files).
- Empty or missing directory: an empty DataFrame with the schema's columns and types.
- The trials table is deduplicated on `trial_id`, keeping the newest `created_at` (defensive: the
  writer names files by trial id, but directories get merged by hand).

Files are read concurrently by a thread pool (Parquet decoding and object-store requests release
the GIL); ~10^4 one-row trial files take a few seconds on two cores.

`filter_trials` then keeps the trials that fit their training set and have the measured columns,
and counts the dropped ones per reason (say what was dropped, and why).
"""

from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Iterable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from study.schema import TABLES, table_schema

from study.records import record_path, resolve

MAX_WARNINGS = 20  # per load; beyond this the skipped files are summarized in one warning


def _is_hidden(name: str) -> bool:
    return name.startswith((".", "_"))


def _list_files(fs: pafs.FileSystem, root: str, table: str, trial_ids: Iterable[str] | None) -> list[str]:
    """Paths of the candidate files of one table (hidden names excluded), sorted."""
    directory = f"{root.rstrip('/')}/{table}"
    if trial_ids is not None:  # only the named trials: no listing needed
        wanted = [record_path(root, table, tid) for tid in sorted(set(trial_ids))]
        infos = fs.get_file_info(wanted) if wanted else []
        return [info.path for info in infos if info.type == pafs.FileType.File]
    selector = pafs.FileSelector(directory, allow_not_found=True, recursive=False)
    try:
        infos = fs.get_file_info(selector)
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(info.path for info in infos
                  if info.type == pafs.FileType.File and not _is_hidden(info.base_name))


def _conform(data: pa.Table, schema: pa.Schema, keep_extra: bool) -> pa.Table:
    """`data` with exactly the schema's columns (cast; missing ones null), plus extras if asked."""
    if data.schema.equals(schema, check_metadata=False):
        return data.replace_schema_metadata(schema.metadata)  # so that concat sees one schema
    arrays, fields = [], []
    for fld in schema:
        if fld.name in data.column_names:
            column = data.column(fld.name)
            arrays.append(column if column.type == fld.type else column.cast(fld.type))
        else:
            arrays.append(pa.nulls(data.num_rows, type=fld.type))
        fields.append(fld)
    if keep_extra:
        for name in data.column_names:
            if name not in schema.names:
                arrays.append(data.column(name))
                fields.append(data.schema.field(name))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields, metadata=schema.metadata))


def _read_one(fs: pafs.FileSystem, path: str, schema: pa.Schema, keep_extra: bool) -> pa.Table | str:
    """The conformed table of one file, or a one-line reason why it was skipped."""
    if not path.endswith(".parquet"):
        return "not a .parquet file"
    try:
        with fs.open_input_stream(path) as handle:  # one whole read: one GET on object stores
            blob = handle.read()
        data = pq.ParquetFile(pa.BufferReader(blob)).read(use_threads=False)
    except (OSError, pa.ArrowException, ValueError) as exc:  # corrupt, truncated, foreign, vanished
        return f"unreadable Parquet ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
    try:
        return _conform(data, schema, keep_extra)
    except (pa.ArrowException, ValueError) as exc:
        return f"columns do not match the schema ({type(exc).__name__}: {exc})"


def _warn_skipped(table: str, skipped: list[tuple[str, str]]) -> None:
    for path, reason in skipped[:MAX_WARNINGS]:
        warnings.warn(f"skipped {table} file {path}: {reason}", stacklevel=4)
    if len(skipped) > MAX_WARNINGS:
        rest = len(skipped) - MAX_WARNINGS
        warnings.warn(f"skipped {rest} more unreadable {table} files (first: {skipped[MAX_WARNINGS][0]})",
                      stacklevel=4)


def load_table(location: str, table: str, trial_ids: Iterable[str] | None = None,
               keep_extra: bool = False, max_workers: int | None = None) -> pd.DataFrame:
    """All rows of one table (`trials`, `points` or `trajectories`) under `location` as a DataFrame.

    trial_ids: read only these trials' files (e.g. the trials kept by `filter_trials`).
    keep_extra: keep columns that the current schema does not know (default: drop them).
    max_workers: reader threads (default: 16 for object stores, min(8, 2 x CPUs) locally).
    """
    if table not in TABLES:
        raise ValueError(f"unknown table {table!r}; tables: {', '.join(TABLES)}")
    schema = table_schema(table)
    fs, root = resolve(location)
    paths = _list_files(fs, root, table, trial_ids)
    if max_workers is None:
        local = isinstance(fs, pafs.LocalFileSystem)
        max_workers = min(8, 2 * (os.cpu_count() or 1)) if local else 16
    if len(paths) > 1 and max_workers > 1:
        with ThreadPoolExecutor(max_workers=max_workers) as pool:
            results = list(pool.map(lambda p: _read_one(fs, p, schema, keep_extra), paths))
    else:
        results = [_read_one(fs, p, schema, keep_extra) for p in paths]
    tables = [r for r in results if isinstance(r, pa.Table)]
    _warn_skipped(table, [(p, r) for p, r in zip(paths, results) if isinstance(r, str)])
    if not tables:
        return schema.empty_table().to_pandas()
    try:
        combined = pa.concat_tables(tables, promote_options="permissive" if keep_extra else "none")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:  # extra columns whose types disagree across files
        warnings.warn(f"extra {table} columns dropped: their types differ between files ({exc})", stacklevel=3)
        combined = pa.concat_tables([t.select(schema.names) for t in tables])
    frame = combined.to_pandas()
    if table == "trials":
        frame = _newest_per_trial(frame)
    return frame


def _newest_per_trial(trials: pd.DataFrame) -> pd.DataFrame:
    """One row per trial_id: the one with the newest created_at (rows without a date count as oldest)."""
    if not trials["trial_id"].duplicated().any():
        return trials
    order = trials["created_at"].sort_values(kind="stable", na_position="first").index
    newest = trials.loc[order].drop_duplicates("trial_id", keep="last")
    return newest.sort_index().reset_index(drop=True)


def load_trials(location: str, keep_extra: bool = False, max_workers: int | None = None) -> pd.DataFrame:
    """One row per trial (hp.*, train.*, test.*, gap.*, measure.*, status, ...); see `load_table`."""
    return load_table(location, "trials", keep_extra=keep_extra, max_workers=max_workers)


def load_points(location: str, trial_ids: Iterable[str] | None = None, keep_extra: bool = False,
                max_workers: int | None = None) -> pd.DataFrame:
    """One row per measured data point (trial_id, split, index, loss, jacobian, ...); see `load_table`."""
    return load_table(location, "points", trial_ids, keep_extra, max_workers)


def load_trajectories(location: str, trial_ids: Iterable[str] | None = None, keep_extra: bool = False,
                      max_workers: int | None = None) -> pd.DataFrame:
    """One row per trajectory (trial_id, kind, index, transitions, ...); see `load_table`."""
    return load_table(location, "trajectories", trial_ids, keep_extra, max_workers)


# -- filter ---------------------------------------------------------------------------------------

REQUIRED = ("gap.loss", "measure.jacobian_test")  # what every figure and statistic needs


@dataclass
class FilterResult:
    """Trials kept for the analysis, and how many were dropped for which reason."""

    kept: pd.DataFrame
    dropped: pd.DataFrame  # columns: reason, count (one row per reason, largest first)

    def summary(self) -> str:
        """'kept K of N trials' then one 'reason: count' line per reason."""
        total = len(self.kept) + int(self.dropped["count"].sum())
        lines = [f"kept {len(self.kept)} of {total} trials"]
        lines += [f"{row.reason}: {row.count}" for row in self.dropped.itertuples(index=False)]
        return "\n".join(lines)


def drop_reasons(trials: pd.DataFrame, min_train_accuracy: float | None = None,
                 required: Iterable[str] = REQUIRED) -> pd.Series:
    """Per trial, why it is dropped (the first rule it fails), or None when it is kept.

    Rules, in order:
    1. status. Kept: "ok" (the trial reached its target train accuracy). Dropped under their own
       status name: "not_fit", "diverged", "error"; "status_missing" when null.
       With `min_train_accuracy`, "ok" and "not_fit" trials are kept iff train.accuracy >= it
       (else "train.accuracy<{min}"); "diverged" and "error" stay dropped.
    2. "missing:<column>" for each required column (default gap.loss and measure.jacobian_test)
       that is null, NaN or infinite.
    """
    reasons = pd.Series([None] * len(trials), index=trials.index, dtype=object)
    status = trials["status"] if "status" in trials else pd.Series(None, index=trials.index, dtype=object)
    if min_train_accuracy is None:
        bad = status != "ok"
        reasons[bad] = status[bad].astype(object)
    else:
        fittable = status.isin(["ok", "not_fit"])
        reasons[~fittable] = status[~fittable].astype(object)
        accuracy = pd.to_numeric(trials.get("train.accuracy", pd.Series(float("nan"), index=trials.index)))
        low = fittable & ~(accuracy >= min_train_accuracy)
        reasons[low] = f"train.accuracy<{min_train_accuracy:g}"
    reasons[status.isna()] = "status_missing"
    for column in required:
        values = pd.to_numeric(trials[column], errors="coerce") if column in trials else \
            pd.Series(float("nan"), index=trials.index)
        missing = reasons.isna() & ~np.isfinite(values.astype(float))
        reasons[missing] = f"missing:{column}"
    return reasons


def filter_trials(trials: pd.DataFrame, min_train_accuracy: float | None = None,
                  required: Iterable[str] = REQUIRED) -> FilterResult:
    """The trials the science uses (see `drop_reasons`), and the count dropped per reason."""
    reasons = drop_reasons(trials, min_train_accuracy, tuple(required))
    kept = trials[reasons.isna()].reset_index(drop=True)
    counts = reasons.dropna().value_counts(sort=False)
    dropped = pd.DataFrame({"reason": counts.index.astype(str), "count": counts.to_numpy(dtype=np.int64)})
    dropped = dropped.sort_values(["count", "reason"], ascending=[False, True], ignore_index=True)
    return FilterResult(kept=kept, dropped=dropped)
