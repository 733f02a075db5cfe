"""Reading one kind of Parquet file of a results location concurrently, conformed to a schema, skipping (with
a warning naming each) what cannot be read: the half of analysis.load that knows files, shared by the
tables and the measures' parts (analysis.versions)."""

from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Iterable

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from study.records import record_path

MAX_WARNINGS = 20  # per load; beyond this the skipped files are summarized in one warning


def is_hidden(name: str) -> bool:
    return name.startswith((".", "_"))


def list_files(fs: pafs.FileSystem, root: str, table: str, trial_ids: Iterable[str] | None) -> list[str]:
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
                  if info.type == pafs.FileType.File and not is_hidden(info.base_name))


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


def read_one(fs: pafs.FileSystem, path: str, schema: pa.Schema, keep_extra: bool) -> pa.Table | str:
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


def warn_skipped(table: str, skipped: list[tuple[str, str]]) -> None:
    for path, reason in skipped[:MAX_WARNINGS]:
        warnings.warn(f"skipped {table} file {path}: {reason}", stacklevel=5)
    if len(skipped) > MAX_WARNINGS:
        rest = len(skipped) - MAX_WARNINGS
        warnings.warn(f"skipped {rest} more unreadable {table} files (first: {skipped[MAX_WARNINGS][0]})",
                      stacklevel=5)


def read_tables(fs: pafs.FileSystem, paths: list[str], schema: pa.Schema, keep_extra: bool = False,
                max_workers: int | None = None, what: str = "") -> list[pa.Table]:
    """The conformed tables of `paths` (read by a thread pool: default 16 for object stores, min(8, 2 x CPUs)
    locally); each unreadable file is skipped with a warning naming it (`what` names the table)."""
    if max_workers is None:
        local = isinstance(fs, pafs.LocalFileSystem)
        max_workers = min(8, 2 * (os.cpu_count() or 1)) if local else 16
    if len(paths) > 1 and max_workers > 1:
        with ThreadPoolExecutor(max_workers=max_workers) as pool:
            results = list(pool.map(lambda p: read_one(fs, p, schema, keep_extra), paths))
    else:
        results = [read_one(fs, p, schema, keep_extra) for p in paths]
    warn_skipped(what, [(p, r) for p, r in zip(paths, results) if isinstance(r, str)])
    return [r for r in results if isinstance(r, pa.Table)]
