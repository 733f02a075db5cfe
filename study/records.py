"""Where a trial's records live and how they are written: atomically, locally or on an object store.

Layout under an output location (a local directory or an `s3://bucket/prefix` URI):

    trials/<trial_id>.parquet         one row per trial (hp.*, train.*, test.*, gap.*, measure.*, time.*)
    points/<trial_id>.parquet         one row per measured data point
    trajectories/<trial_id>.parquet   one row per trajectory
    models/<trial_id>.safetensors     the trained net (study.weights; left out with --no-keep-models)
    measures/<name>-v<version>/{trials,points,trajectories}/<trial_id>.parquet
                                      a measure computed later from the kept net (study.remeasure)

`trials/` is written last, so a trial file's presence means its record is complete (and a measure's
`trials/` part last, so its presence means that measure's value is complete). Every file
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
from study.schema import KEYS, measure_part_schema, to_table


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


def model_path(root: str, trial_id: str) -> str:
    """Where a trial's kept net lives under a results root: `<root>/models/<trial_id>.safetensors`."""
    return f"{root.rstrip('/')}/models/{trial_id}.safetensors" if root else f"models/{trial_id}.safetensors"


MEASURES_DIR = "measures"


def measure_dir(root: str, name: str, version: int) -> str:
    """The folder of the values that version `version` of measure `name` computed after the trials:
    `<root>/measures/<name>-v<version>`."""
    return f"{root.rstrip('/')}/{MEASURES_DIR}/{name}-v{version}" if root else f"{MEASURES_DIR}/{name}-v{version}"


def parse_measure_dir(base_name: str) -> tuple[str, int] | None:
    """(name, version) of a folder under measures/ named `<name>-v<version>`, else None."""
    name, sep, version = base_name.rpartition("-v")
    return (name, int(version)) if sep and name and version.isdigit() else None


def write_table_atomic(location: str, table: str, trial_id: str, data: pa.Table) -> str:
    """Write record_path(location, table, trial_id) atomically (write_atomic)."""
    return write_atomic(location, record_path("", table, trial_id), lambda sink: pq.write_table(data, sink))


def write_trial(location: str, trial_id: str, record: dict[str, Any], points: pd.DataFrame,
                trajectories: pd.DataFrame, weights: bytes | None = None) -> None:
    """Write one trial's tables and, if given, its weights file's bytes (study.weights.encode); the trial row
    goes last and marks the trial complete."""
    write_table_atomic(location, "points", trial_id, to_table("points", points))
    write_table_atomic(location, "trajectories", trial_id, to_table("trajectories", trajectories))
    if weights is not None:
        write_atomic(location, model_path("", trial_id), lambda sink: sink.write(weights))
    write_table_atomic(location, "trials", trial_id, to_table("trials", [record]))


def write_measure(location: str, name: str, version: int, trial_id: str, row: dict[str, Any],
                  points: pd.DataFrame | None, trajectories: pd.DataFrame | None) -> None:
    """Write the values version `version` of measure `name` computed for a trial after the fact: its
    points and trajectories parts (if it has columns there), then its trials part, which marks it complete."""
    folder = measure_dir("", name, version)
    for table, rows in (("points", points), ("trajectories", trajectories), ("trials", [row])):
        schema = measure_part_schema(name, table)
        if table != "trials" and len(schema) == len(KEYS[table]):
            continue  # the measure writes nothing to this table
        rows = pd.DataFrame(columns=["trial_id"]) if rows is None else rows
        if table != "trials":
            rows = rows.assign(trial_id=trial_id) if len(rows) else rows
        write_atomic(location, record_path(folder, table, trial_id),
                     lambda sink, t=to_table(table, rows, schema): pq.write_table(t, sink))


def measure_written(location: str, name: str, version: int, trial_id: str) -> bool:
    """Whether version `version` of measure `name` has written its value for `trial_id` (its trials part)."""
    fs, root = resolve(location)
    return fs.get_file_info(record_path(measure_dir(root, name, version), "trials", trial_id)).type \
        == pafs.FileType.File


def _ids_in(fs: pafs.FileSystem, directory: str, suffix: str) -> set[str]:
    """The names (without `suffix`) of the visible files ending in `suffix` in `directory`."""
    selector = pafs.FileSelector(directory, allow_not_found=True)
    return {info.base_name[: -len(suffix)] for info in fs.get_file_info(selector)
            if info.type == pafs.FileType.File and info.base_name.endswith(suffix)
            and not info.base_name.startswith((".", "_"))}


def kept_trial_ids(location: str) -> set[str]:
    """Ids of the trials whose trained net is kept at `location` (models/<trial_id>.safetensors)."""
    fs, root = resolve(location)
    return _ids_in(fs, f"{root.rstrip('/')}/models", ".safetensors")


def measured_trial_ids(location: str) -> dict[tuple[str, int], set[str]]:
    """(measure, version) -> ids of the trials whose value that version computed after the trial (its
    measures/<name>-v<version>/trials/ part exists), for every such folder at `location`."""
    fs, root = resolve(location)
    selector = pafs.FileSelector(f"{root.rstrip('/')}/{MEASURES_DIR}", allow_not_found=True)
    found = {}
    for info in fs.get_file_info(selector):
        parsed = parse_measure_dir(info.base_name) if info.type == pafs.FileType.Directory else None
        if parsed is not None:
            found[parsed] = _ids_in(fs, f"{info.path}/trials", ".parquet")
    return found


def completed_trial_ids(location: str) -> set[str]:
    """Ids of trials whose record is complete at `location` (their trials/ file exists)."""
    fs, root = resolve(location)
    return _ids_in(fs, f"{root.rstrip('/')}/trials", ".parquet")


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
