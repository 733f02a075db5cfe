"""The three result tables, their versioned schemas, and atomic Parquet writing.

Layout under an output location (a local directory or an `s3://bucket/prefix` URI):

    trials/<trial_id>.parquet         one row per trial (hp.*, train.*, test.*, gap.*, measure.*, time.*)
    points/<trial_id>.parquet         one row per measured data point
    trajectories/<trial_id>.parquet   one row per trajectory

`trials/` is written last, so a trial file's presence means its record is complete. Every file
is written to a hidden temporary name and then renamed (local), or uploaded in one PUT (object
stores, where an object only appears once complete); readers ignore names starting with '.'.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import fields
from typing import Any, Callable

import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from study.config import ConfigError, TrialConfig

SCHEMA_VERSION = 1
TABLES = ("trials", "points", "trajectories")
STATUSES = ("ok", "not_fit", "diverged", "error")

_ARROW_TYPES = {"int": pa.int64(), "float": pa.float64(), "bool": pa.bool_(), "str": pa.string()}

# Columns of the trials table besides hp.<field>: name -> arrow type.
TRIAL_COLUMNS: dict[str, pa.DataType] = {
    "trial_id": pa.string(),
    "schema_version": pa.int32(),
    "status": pa.string(),
    "error": pa.string(),
    "pair_id": pa.string(),
    "pair.factor": pa.string(),
    "model.n_params": pa.int64(),
    "model.n_neurons": pa.int64(),
    "data.n_features": pa.int64(),
    "data.n_classes": pa.int64(),
    "train.steps": pa.int64(),
    "train.loss": pa.float64(),
    "train.accuracy": pa.float64(),
    "train.accuracy_true_labels": pa.float64(),
    "test.loss": pa.float64(),
    "test.accuracy": pa.float64(),
    "gap.loss": pa.float64(),
    "gap.accuracy": pa.float64(),
    "measure.jacobian_test": pa.float64(),
    "measure.jacobian_train": pa.float64(),
    "measure.logit_jacobian_test": pa.float64(),
    "measure.logit_jacobian_train": pa.float64(),
    "measure.logit_jacobian_sq_test": pa.float64(),
    "measure.transitions_test": pa.float64(),
    "measure.transitions_train": pa.float64(),
    "measure.transitions_random": pa.float64(),
    "measure.transitions_translation": pa.float64(),
    "measure.jacobian_trajectory_train": pa.float64(),
    "measure.jacobian_trajectory_random": pa.float64(),
    "measure.param_norm": pa.float64(),
    "measure.spectral_product": pa.float64(),
    "measure.path_norm": pa.float64(),
    "measure.margin": pa.float64(),
    "measure.spectral_margin": pa.float64(),
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

POINT_COLUMNS: dict[str, pa.DataType] = {
    "trial_id": pa.string(),
    "split": pa.string(),  # "train" | "test"
    "index": pa.int64(),  # row of the split in load_dataset(cfg)
    "label": pa.int64(),  # the label trained on (train) or the true label (test)
    "loss": pa.float64(),  # -log softmax(h(x))_label
    "correct": pa.bool_(),
    "jacobian": pa.float64(),  # ||d softmax / dx||_F
    "logit_jacobian": pa.float64(),  # ||d logits / dx||_F
    "jacobian_y": pa.float64(),  # ||d softmax_label / dx||_2
}

TRAJECTORY_COLUMNS: dict[str, pa.DataType] = {
    "trial_id": pa.string(),
    "kind": pa.string(),  # train_same_class | train_diff_class | test | random | translation
    "index": pa.int64(),  # which trajectory of its kind
    "transitions": pa.int64(),
    "method": pa.string(),  # exact | sampled
    "resolution": pa.int64(),  # sample intervals m of the final pass (sampled) or kink events examined (exact)
    "converged": pa.bool_(),
    "length": pa.float64(),  # Euclidean length of the trajectory in input space
    "jacobian_mean": pa.float64(),  # mean ||d softmax/dx||_F over trajectory_points points
    "jacobian_max": pa.float64(),
}


def hp_columns() -> dict[str, pa.DataType]:
    return {f"hp.{f.name}": _ARROW_TYPES[f.type] for f in fields(TrialConfig)}


def table_schema(table: str) -> pa.Schema:
    """The explicit Arrow schema of one table (trials include hp.<every TrialConfig field>)."""
    if table == "trials":
        columns = dict(TRIAL_COLUMNS)
        columns.update(hp_columns())
    elif table == "points":
        columns = POINT_COLUMNS
    elif table == "trajectories":
        columns = TRAJECTORY_COLUMNS
    else:
        raise ValueError(f"unknown table {table!r}; tables: {', '.join(TABLES)}")
    return pa.schema([pa.field(name, kind) for name, kind in columns.items()],
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


def to_table(table: str, rows: pd.DataFrame | list[dict[str, Any]]) -> pa.Table:
    """Rows conformed to the table's schema: missing columns become nulls, extra columns are an error."""
    schema = table_schema(table)
    frame = pd.DataFrame(rows) if not isinstance(rows, pd.DataFrame) else rows
    extra = sorted(set(frame.columns) - set(schema.names))
    if extra:
        raise ValueError(f"columns not in the {table} schema: {extra}")
    arrays = []
    for fld in schema:
        if fld.name in frame.columns:
            values = frame[fld.name].tolist()
            values = [None if (isinstance(v, float) and v != v) else v for v in values]
            arrays.append(pa.array(values, type=fld.type))
        else:
            arrays.append(pa.nulls(len(frame), type=fld.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def resolve(location: str) -> tuple[pafs.FileSystem, str]:
    """A pyarrow file system and a path inside it for a directory or an URI such as s3://bucket/prefix."""
    if "://" in location:
        return pafs.FileSystem.from_uri(location)
    return pafs.LocalFileSystem(), os.path.abspath(location)


def check_writable(location: str) -> None:
    """ConfigError (one line) unless records can be written at `location` (a directory: write access and
    1 MiB free; an object store: the bucket is reachable and exists); leaves nothing behind."""
    if "://" not in location:
        path = os.path.abspath(location)
        if os.path.exists(path) and not os.path.isdir(path):
            raise ConfigError(f"--out {location} is a file, not a directory")
        probe = path
        while not os.path.exists(probe):
            probe = os.path.dirname(probe)
        if not os.path.isdir(probe):
            raise ConfigError(f"--out {location} cannot be created: {probe} is a file, not a directory")
        try:  # 1 MiB into an unnamed temporary file (O_TMPFILE): proves write access and some free space
            with tempfile.TemporaryFile(dir=probe) as handle:  # (quotas included); leaves nothing behind
                handle.write(bytes(2 ** 20))
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as exc:
            raise ConfigError(f"--out {location} is not writable ({exc.strerror or exc} in {probe}); "
                              "choose another directory") from None
        return
    try:
        fs, root = resolve(location)
        bucket = root.split("/", 1)[0]
        info = fs.get_file_info(bucket)
    except Exception as exc:  # bad URI, unreachable endpoint, refused credentials
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"--out {location} cannot be reached: {first}") from None
    if info.type != pafs.FileType.Directory:
        raise ConfigError(f"--out {location}: bucket {bucket!r} does not exist or is not visible with "
                          "these credentials; create it first")


def write_atomic(location: str, relative: str, write: Callable[[Any], None]) -> str:
    """Write `<location>/<relative>` so that readers never see a partial file; `write(sink)` puts the content
    into a binary output stream. Locally: a hidden temp file ('.tmp-...') in the same directory, fsynced,
    then renamed into place (removed if anything fails); on object stores: one PUT, the object appears
    only when complete."""
    fs, root = resolve(location)
    final = f"{root.rstrip('/')}/{relative}"
    directory, name = final.rsplit("/", 1)
    if isinstance(fs, pafs.LocalFileSystem):
        os.makedirs(directory, exist_ok=True)
        stem, dot, extension = name.rpartition(".")
        temp = f"{directory}/.tmp-{stem or name}-{uuid.uuid4().hex}" + (f".{extension}" if dot else "")
        try:
            with open(temp, "wb") as handle:
                write(handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, final)
        finally:
            if os.path.exists(temp):
                os.remove(temp)
    else:
        fs.create_dir(directory, recursive=True)
        with fs.open_output_stream(final) as stream:
            write(stream)
    return final


def record_path(root: str, table: str, trial_id: str) -> str:
    """Where a trial's row(s) of `table` live under a results root (a local path or a resolved bucket path):
    `<root>/<table>/<trial_id>.parquet`. The one place that names it."""
    return f"{root.rstrip('/')}/{table}/{trial_id}.parquet" if root else f"{table}/{trial_id}.parquet"


def write_table_atomic(location: str, table: str, trial_id: str, data: pa.Table) -> str:
    """Write record_path(location, table, trial_id) atomically (write_atomic)."""
    return write_atomic(location, record_path("", table, trial_id), lambda sink: pq.write_table(data, sink))


def write_trial(location: str, trial_id: str, record: dict[str, Any], points: pd.DataFrame,
                trajectories: pd.DataFrame) -> None:
    """Write one trial's three tables; the trial row goes last and marks the trial complete."""
    write_table_atomic(location, "points", trial_id, to_table("points", points))
    write_table_atomic(location, "trajectories", trial_id, to_table("trajectories", trajectories))
    write_table_atomic(location, "trials", trial_id, to_table("trials", [record]))


def completed_trial_ids(location: str) -> set[str]:
    """Ids of trials whose record is complete at `location` (their trials/ file exists)."""
    fs, root = resolve(location)
    selector = pafs.FileSelector(f"{root.rstrip('/')}/trials", allow_not_found=True)
    done = set()
    for info in fs.get_file_info(selector):
        name = info.base_name
        if info.type == pafs.FileType.File and name.endswith(".parquet") and not name.startswith((".", "_")):
            done.add(name[: -len(".parquet")])
    return done


def unreadable_records(location: str, trial_ids: set[str] | list[str]) -> list[str]:
    """Ids among `trial_ids` whose trials/ file has no valid Parquet footer (say, truncated by an interrupted
    copy, or overwritten by something else): not a complete record, so a sweep runs those trials again.
    Reads each file's footer only (a few KiB; one ranged GET on object stores)."""
    fs, root = resolve(location)

    def unreadable(trial_id: str) -> bool:
        try:
            with fs.open_input_file(record_path(root, "trials", trial_id)) as handle:
                return pq.ParquetFile(handle).metadata.num_rows < 1
        except (OSError, pa.ArrowException, ValueError):
            return True

    ids = sorted(trial_ids)
    with ThreadPoolExecutor(max_workers=8 if isinstance(fs, pafs.LocalFileSystem) else 16) as pool:
        return [tid for tid, bad in zip(ids, pool.map(unreadable, ids)) if bad]
