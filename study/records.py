"""Where a trial's records live and how they are written: atomically, locally or on an object store.

Layout under an output location (a local directory or an `s3://bucket/prefix` URI):

    trials/<trial_id>.parquet         one row per trial (hp.*, train.*, test.*, gap.*, measure.*, time.*)
    points/<trial_id>.parquet         one row per measured data point
    trajectories/<trial_id>.parquet   one row per trajectory

`trials/` is written last, so a trial file's presence means its record is complete. Every file
is written to a hidden temporary name and then renamed (local), or uploaded in one PUT (object
stores, where an object only appears once complete); readers ignore names starting with '.'.
What the tables hold (their columns and types) is study.schema.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from study.config import ConfigError
from study.schema import to_table


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
