"""Helpers of the sweep tests: parse CLI arguments, run the CLI in a subprocess, read records."""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys

from ray_cluster import LOOPBACK


def sweep_args(*argv: str) -> argparse.Namespace:
    from sweeps.cli import add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv) + ["--quiet"])


def run_cli(*argv: str, env: dict | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sweeps.command", "sweep", *argv], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **LOOPBACK, **(env or {})})


def popen_cli(*argv: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "sweeps.command", "sweep", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env={**os.environ, **LOOPBACK, **(env or {})})


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
