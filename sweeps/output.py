"""The sweep's output location (a directory every node sees, or s3://bucket/prefix): checks, metadata, status.

The Parquet records are the source of truth: a trial is done when trials/<trial_id>.parquet exists
(study.records.completed_trial_ids). Besides them a sweep writes one small JSON file per launch,
sweeps/<sweep_id>-<UTC time>-<pid>.json (preset, overrides, seed, N, trial ids, start and end time,
host, counts), written atomically: a hidden temp file renamed into place, or one PUT on object stores.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterable

import pyarrow as pa
import pyarrow.parquet as pq

from study.schema import TABLES

from study.records import MEASURES_DIR, record_path, resolve, write_atomic
from sweeps.memory import OOM_PREFIX

STALE_TEMP_S = 3600.0  # hidden temp files older than this are leftovers of a killed writer


def absolute(location: str) -> str:
    """Workers run elsewhere (another directory, another node): give them an absolute path or the URI."""
    return location if "://" in location else os.path.abspath(location)


def clean_stale_temps(location: str, older_than_s: float = STALE_TEMP_S) -> int:
    """Remove hidden temp files ('.'-prefixed) older than `older_than_s` left by killed writers (local only;
    object-store writes are single PUTs and leave none). Readers ignore them anyway. Returns the count."""
    if "://" in location:
        return 0
    removed, now = 0, time.time()
    measures = os.path.join(location, MEASURES_DIR)
    parts = [os.path.join(entry.path, table) for entry in (os.scandir(measures) if os.path.isdir(measures) else [])
             for table in TABLES]
    for directory in [*(os.path.join(location, d) for d in (*TABLES, "sweeps", "models")), *parts]:
        if not os.path.isdir(directory):
            continue
        for entry in os.scandir(directory):
            if entry.name.startswith(".") and entry.is_file(follow_symlinks=False):
                try:
                    if now - entry.stat().st_mtime > older_than_s:
                        os.remove(entry.path)
                        removed += 1
                except FileNotFoundError:  # another cleaner got there first
                    pass
    return removed


def write_json_atomic(location: str, relative: str, payload: dict[str, Any]) -> str:
    """Write `payload` as JSON to `<location>/<relative>` atomically (study.records.write_atomic)."""
    data = json.dumps(payload, indent=1, sort_keys=True, default=str).encode()
    return write_atomic(location, relative, lambda sink: sink.write(data))


def record_counts(location: str, trial_ids: Iterable[str]) -> tuple[Counter, int]:
    """(trials by status, how many of the error rows say "out of memory"), read from their Parquet rows
    (not from Tune's state); status "unreadable" for a file that is not.

    File by file (threads for object stores): a pyarrow dataset over N files holds ~0.2 MiB per file."""
    fs, root = resolve(location)

    def read(trial_id: str) -> list[tuple[str, bool]]:
        try:
            path = record_path(root, "trials", trial_id)
            table = pq.read_table(path, columns=["status", "error"], filesystem=fs)
        except (OSError, pa.ArrowException, ValueError):
            return [("unreadable", False)]
        return [(status, status == "error" and str(error or "").startswith(OOM_PREFIX))
                for status, error in zip(table.column("status").to_pylist(), table.column("error").to_pylist())]

    with ThreadPoolExecutor(max_workers=8) as pool:
        rows = [row for found in pool.map(read, trial_ids) for row in found]
    return Counter(status for status, _ in rows), sum(oom for _, oom in rows)


def status_counts(location: str, trial_ids: Iterable[str]) -> Counter:
    """Trials by status (record_counts)."""
    return record_counts(location, trial_ids)[0]