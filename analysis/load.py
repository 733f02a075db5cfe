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
- load_trials, load_points and load_trajectories join the measures computed after the trials
  (`sensitivity measure`, under measures/): each measure's columns hold its newest version's values
  (analysis.versions); load_table returns the tables as the trials wrote them.

Files are read concurrently by a thread pool (Parquet decoding and object-store requests release
the GIL); ~10^4 one-row trial files take a few seconds on two cores.

`filter_trials` then keeps the trials that fit their training set and have the measured columns,
and counts the dropped ones per reason (say what was dropped, and why).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Iterable

import numpy as np
import pandas as pd
import pyarrow as pa

from analysis.files import list_files, read_tables
from analysis.versions import overlay_rows, overlay_trials
from study.records import measured_trial_ids, resolve
from study.schema import TABLES, table_schema


def load_table(location: str, table: str, trial_ids: Iterable[str] | None = None,
               keep_extra: bool = False, max_workers: int | None = None) -> pd.DataFrame:
    """All rows of one table (`trials`, `points` or `trajectories`) under `location` as a DataFrame, as the
    trials wrote them (load_trials, load_points and load_trajectories add the measures computed later).

    trial_ids: read only these trials' files (e.g. the trials kept by `filter_trials`).
    keep_extra: keep columns that the current schema does not know (default: drop them).
    max_workers: reader threads (default: 16 for object stores, min(8, 2 x CPUs) locally).
    """
    if table not in TABLES:
        raise ValueError(f"unknown table {table!r}; tables: {', '.join(TABLES)}")
    schema = table_schema(table)
    fs, root = resolve(location)
    tables = read_tables(fs, list_files(fs, root, table, trial_ids), schema, keep_extra, max_workers, table)
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
    """One row per trial (hp.*, train.*, test.*, gap.*, measure.*, status, ...); see `load_table`. Each
    measure's columns hold its newest version's values, computed in the trial or later (analysis.versions)."""
    trials = load_table(location, "trials", keep_extra=keep_extra, max_workers=max_workers)
    return overlay_trials(location, trials)


def _joined_rows(location: str, table: str, trial_ids: Iterable[str] | None, keep_extra: bool,
                 max_workers: int | None) -> pd.DataFrame:
    frame = load_table(location, table, trial_ids, keep_extra, max_workers)
    measured = measured_trial_ids(location)
    if not measured:
        return frame
    # The trials asked for, not only those with rows here: a trial may have its first rows of this table in
    # a later part (a measure it skipped, or one registered after it, that writes trajectories).
    ids = None if trial_ids is None else set(trial_ids)
    return overlay_rows(location, table, frame, load_table(location, "trials", ids, max_workers=max_workers),
                        measured)


def load_points(location: str, trial_ids: Iterable[str] | None = None, keep_extra: bool = False,
                max_workers: int | None = None) -> pd.DataFrame:
    """One row per measured data point (trial_id, split, index, loss, jacobian, ...); see `load_table`.
    Measures' columns from their newest version, as in load_trials."""
    return _joined_rows(location, "points", trial_ids, keep_extra, max_workers)


def load_trajectories(location: str, trial_ids: Iterable[str] | None = None, keep_extra: bool = False,
                      max_workers: int | None = None) -> pd.DataFrame:
    """One row per trajectory (trial_id, kind, index, transitions, ...); see `load_table`. Measures' columns
    from their newest version, as in load_trials."""
    return _joined_rows(location, "trajectories", trial_ids, keep_extra, max_workers)


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
