"""The `sensitivity` command as the tests run it: its `sweep` arguments parsed in this process, or the whole
command as a subprocess on the loopback interface (its own Ray, when it starts one)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

from ray_cluster import LOOPBACK


def sweep_args(*argv: str) -> argparse.Namespace:
    """`sensitivity sweep ARGV --quiet`, parsed."""
    from sweeps.cli import add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args([*argv, "--quiet"])


def _command(argv: tuple[str, ...]) -> list[str]:
    return [sys.executable, "-m", "sweeps.command", *argv]


def cli(*argv: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """`sensitivity ARGV` as a subprocess, run to its end: stdout and stderr captured."""
    return subprocess.run(_command(argv), capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **LOOPBACK, **(env or {})})


def popen_cli(*argv: str, env: dict | None = None) -> subprocess.Popen:
    """`sensitivity ARGV` started as a subprocess, stderr merged into its stdout pipe."""
    return subprocess.Popen(_command(argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, **LOOPBACK, **(env or {})})
