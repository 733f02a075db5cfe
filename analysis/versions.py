"""Measures computed after the trials (study.remeasure), joined to the tables as if the trials had computed
them: every measure's columns hold the values of its newest version.

Per trial and measure, the newest version wins among the trial row's own (`version.<name>`, null for a
measure it never ran) and the parts under `measures/<name>-v<version>/`; at equal versions the part wins
(it is the later computation of the same code). Where a part wins:
- trials: the measure's columns and `version.<name>` are the part's;
- points: the measure's point columns of that trial are the part's, joined on (trial_id, split, index);
- trajectories: that trial's rows carrying the measure's columns are replaced by the part's rows.
A location without a measures/ folder costs one listing. `coverage` says, per measure, which versions the
values come from and how many of them were computed after the trial.
"""

from __future__ import annotations

import pandas as pd
import pyarrow as pa

from analysis.files import read_tables
from study import measures as registry
from study.records import measure_dir, measured_trial_ids, record_path, resolve
from study.remeasure import newest_parts, version_of
from study.schema import KEYS, measure_part_schema, table_schema

Measured = dict[tuple[str, int], set[str]]


def winners(trials: pd.DataFrame, measured: Measured) -> dict[str, dict[int, list[str]]]:
    """measure -> version -> the trials (of `trials`, the rows as written) whose values that part holds."""
    found: dict[str, dict[int, list[str]]] = {}
    for name in registry.MEASURES:
        later = newest_parts(measured, name)
        if not later:
            continue
        column = registry.version_column(name)
        own = dict(zip(trials["trial_id"], trials[column])) if column in trials else {}
        for tid in trials["trial_id"]:
            if tid in later and later[tid] >= version_of(own.get(tid)):
                found.setdefault(name, {}).setdefault(later[tid], []).append(tid)
    return found


def _parts(location: str, name: str, version: int, table: str, trial_ids: list[str]) -> pd.DataFrame:
    """Measure `name` version `version`'s part of `table` for these trials (unreadable files skipped, warned)."""
    fs, root = resolve(location)
    folder = measure_dir(root, name, version)
    schema = measure_part_schema(name, table)
    tables = read_tables(fs, [record_path(folder, table, tid) for tid in sorted(trial_ids)], schema,
                         what=f"measures/{name}-v{version}/{table}")
    return pa.concat_tables(tables).to_pandas() if tables else schema.empty_table().to_pandas()


def _conformed(frame: pd.DataFrame, table: str) -> pd.DataFrame:
    """`frame` with the table's columns and types again (joins turn integer columns with gaps into floats);
    columns the schema does not know (load_table's keep_extra) follow as they are."""
    schema = table_schema(table)
    fixed = pa.Table.from_pandas(frame[schema.names], schema=schema, preserve_index=False).to_pandas()
    extra = [c for c in frame.columns if c not in schema.names]
    return pd.concat([fixed, frame[extra].reset_index(drop=True)], axis=1) if extra else fixed


def overlay_trials(location: str, trials: pd.DataFrame, measured: Measured | None = None) -> pd.DataFrame:
    """The trials table with each measure's columns taken from its newest version (see the module doc)."""
    measured = measured_trial_ids(location) if measured is None else measured
    won = winners(trials, measured) if measured and not trials.empty else {}
    if not won:
        return trials
    out = trials.copy()
    for name, by_version in won.items():
        columns = [*registry.COLUMNS[name]["trials"], registry.version_column(name)]
        for version, ids in by_version.items():
            part = _parts(location, name, version, "trials", ids).set_index("trial_id")
            rows = out["trial_id"].isin(part.index)
            for column in columns[:-1]:
                out.loc[rows, column] = out.loc[rows, "trial_id"].map(part[column]).to_numpy()
            out.loc[rows, columns[-1]] = version
    return _conformed(out, "trials")


def overlay_rows(location: str, table: str, frame: pd.DataFrame, base_trials: pd.DataFrame,
                 measured: Measured | None = None) -> pd.DataFrame:
    """The points or trajectories rows `frame` of the trials in `base_trials` (their rows as written), with
    each measure's columns from its newest version (see the module doc)."""
    measured = measured_trial_ids(location) if measured is None else measured
    if not measured or base_trials.empty:
        return frame
    keys = list(KEYS[table])
    changed = False
    for name, by_version in winners(base_trials, measured).items():
        columns = list(registry.COLUMNS[name][table])
        if not columns:
            continue
        for version, ids in by_version.items():
            part = _parts(location, name, version, table, ids)
            affected = frame["trial_id"].isin(ids)
            if table == "points":
                joined = frame[affected].drop(columns=columns).merge(part[keys + columns], on=keys, how="outer")
            else:  # the trial's rows of this measure (any of its columns set) give way to the part's rows
                own = frame[columns].notna().any(axis=1)
                joined = pd.concat([frame[affected & ~own], part], ignore_index=True)
            frame = pd.concat([frame[~affected], joined], ignore_index=True)
            changed = True
    if not changed:
        return frame
    frame = frame.sort_values("trial_id", kind="stable", ignore_index=True)  # each trial's rows in their order
    return _conformed(frame, table)


def coverage(location: str, trials: pd.DataFrame, measured: Measured | None = None) -> pd.DataFrame:
    """Per registered measure and version of its values in `trials` (as loaded, joined): how many trials have
    values of that version and how many of those were computed after the trial. Columns: measure, current
    (the registered version), version (0: no values, or values from before versions), trials, later."""
    measured = measured_trial_ids(location) if measured is None else measured
    rows = []
    for name in registry.MEASURES:
        column = registry.version_column(name)
        versions = trials[column].map(version_of) if column in trials else pd.Series(0, index=trials.index)
        for version, ids in trials["trial_id"].groupby(versions.to_numpy()):
            later = len(set(ids) & measured.get((name, int(version)), set()))
            rows.append({"measure": name, "current": registry.VERSIONS[name], "version": int(version),
                         "trials": len(ids), "later": later})
    return pd.DataFrame(rows, columns=["measure", "current", "version", "trials", "later"])

