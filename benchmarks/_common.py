"""Shared pieces of the benchmarks: the machine, interleaved timing, peak memory, tables.

The machine may be shared with other work, so a benchmark never trusts one timing: it interleaves
the repetitions of the methods it compares (A B A B ...) and reports medians, and its headline
numbers are ratios measured in the same run. Absolute times are printed next to them, with the
machine they come from.
"""

from __future__ import annotations

import os
import platform
import resource
import statistics
import sys
import time
from typing import Callable

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # run as `python benchmarks/bench_x.py` from anywhere
    sys.path.insert(0, ROOT)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> str:
    """One line: CPU model, logical cores, load, torch version, GPU if any."""
    parts = [f"CPU {cpu_model()}", f"{os.cpu_count()} logical cores"]
    try:
        parts.append("load average %.2f %.2f %.2f" % os.getloadavg())
    except OSError:
        pass
    parts.append(f"torch {torch.__version__}, Python {platform.python_version()}")
    if torch.cuda.is_available():
        parts.append(f"GPU {torch.cuda.get_device_name(0)}")
    else:
        parts.append("no GPU")
    return "; ".join(parts)


def header(title: str, command: str) -> None:
    print(f"## {title}\n")
    print(f"machine: {machine()}")
    print(f"command: {command}\n")


def interleaved(methods: dict[str, Callable[[], object]], repeats: int, warmup: int = 1) -> dict[str, list[float]]:
    """Seconds per call of each method, repetitions interleaved (A B C A B C ...) after `warmup` rounds."""
    times: dict[str, list[float]] = {name: [] for name in methods}
    for round_ in range(warmup + repeats):
        for name, fn in methods.items():
            start = time.perf_counter()
            fn()
            elapsed = time.perf_counter() - start
            if round_ >= warmup:
                times[name].append(elapsed)
    return times


def synchronize(device) -> None:
    """Wait for `device` (a torch.device or a name such as "cuda:0") to finish its queued work; nothing on the CPU."""
    if str(getattr(device, "type", device)).startswith("cuda"):
        torch.cuda.synchronize(device)


def synced(fn: Callable[[], object], device) -> Callable[[], object]:
    """fn, then wait for the device (torch.device) to finish: timings on a GPU would otherwise measure the launch."""
    if getattr(device, "type", "cpu") != "cuda":
        return fn

    def run() -> object:
        out = fn()
        synchronize(device)
        return out
    return run


def median(values: list[float]) -> float:
    return statistics.median(values)


def peak_rss_mib() -> float:
    """This process's peak resident set size so far (ru_maxrss; KiB on Linux), in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def fmt_s(seconds: float) -> str:
    if seconds >= 10:
        return f"{seconds:.1f} s"
    if seconds >= 0.1:
        return f"{seconds:.2f} s"
    return f"{seconds * 1e3:.1f} ms"


def table(rows: list[dict[str, object]]) -> str:
    """A Markdown table of rows (dicts with the same keys, in order)."""
    if not rows:
        return "(no rows)\n"
    keys = list(rows[0])
    cells = [[str(row.get(k, "")) for k in keys] for row in rows]
    widths = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(keys)]
    line = lambda values: "| " + " | ".join(v.ljust(w) for v, w in zip(values, widths)) + " |"  # noqa: E731
    out = [line(keys), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(c) for c in cells]
    return "\n".join(out) + "\n"
