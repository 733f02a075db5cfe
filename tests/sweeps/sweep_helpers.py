"""Helpers of the sweep tests: a free port, the records under a location (tests/cli_runs.py runs the CLI)."""

from __future__ import annotations

import socket


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def records(out):
    """Every trial row under `out` (a directory or an s3:// URI); hidden temp files are not read."""
    import pyarrow.dataset as pads

    from study.records import resolve

    fs, root = resolve(str(out))
    return pads.dataset(f"{root.rstrip('/')}/trials", filesystem=fs, format="parquet",
                        exclude_invalid_files=False).to_table().to_pandas()
