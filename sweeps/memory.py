"""A trial's memory: what it reserves on Ray, the guard that holds it to that, and what an out-of-memory
trial becomes.

1. Each Tune trial reserves Ray's `memory` resource: study.resources.estimate_bytes of its config (summed
   over a pack), rounded up to a step of a 1.5x ladder from 256 MiB so that trials of similar size share
   one resource shape and Tune can reuse their actors. Ray then runs on a node only as many trials at
   once as their reservations fit, and a config that fits no node is refused before the sweep starts.
   Where the largest reservation of a chunk still lets every node run as many trials as it has CPUs (and
   GPUs) for, every trial of the chunk asks for that one (uniform_reservation): nothing runs later for it,
   and Tune reuses every actor instead of starting a new worker (imports, data) at each change of shape.
2. While the trial runs, a thread of its worker samples the process's resident memory every `every`
   seconds; when the growth above the resident memory at the start exceeds SLACK times the reservation
   (plus, the first time a process reads a data set, that data set and the library code it pages in),
   it raises TrialOutOfMemory in the trial's thread, at its next Python instruction. The worker reports the
   peak it saw instead of a record (sweeps.worker), and the driver retries the trial once, reserving
   RETRY_MARGIN times that peak; a second overrun, or a retry that fits no node, gets the error row
   "out of memory (N GB in use)" (sweeps.runner).
3. A single allocation larger than what the node has never returns to Python: Ray's memory monitor or the
   kernel kills the worker instead. Tune retries it like any dead worker, and its error row, if it comes to
   that, also starts with "out of memory" when Ray says why it killed the worker.
"""

from __future__ import annotations

import ctypes
import math
import re
import threading

import psutil

SLACK = 2.0  # the estimate is never below a trial's measured peak (benchmarks/bench_memory.py); 2x is a fault
RETRY_MARGIN = 1.25  # a retry reserves this times the peak the failed attempt reached
LADDER_BASE, LADDER_RATIO = 256 * 2 ** 20, 1.5
OOM_PREFIX = "out of memory"
OOM_STATUS = "oom"  # what a stopped trial reports to Tune (never a record's status)
GB = 1e9


LIBRARY_ALLOWANCE = 256 * 2 ** 20  # library code a process's first trial pages in (BLAS, autograd kernels)
_loaded: set[tuple[str, int]] = set()  # data sets this process has read (study.data caches them)


def first_use_allowance(dataset: str, features: int) -> int:
    """What a trial adds to its process beyond estimate_bytes the first time this process sees its data set:
    the raw data set (float32, twice: decoded and cached) and, for the process's first trial, library code.
    Zero from then on."""
    from study.datasets import SPLIT_SIZES

    key = (dataset, features)
    if key in _loaded:
        return 0
    first = not _loaded
    _loaded.add(key)
    return 2 * 4 * sum(SPLIT_SIZES.get(dataset, (20000, 20000))) * features + (LIBRARY_ALLOWANCE if first else 0)


def reservation(estimate: int) -> int:
    """The smallest step LADDER_BASE * LADDER_RATIO^k (k >= 0) that is at least `estimate` bytes."""
    if estimate <= LADDER_BASE:
        return LADDER_BASE
    k = math.ceil(math.log(estimate / LADDER_BASE, LADDER_RATIO) - 1e-9)
    return int(math.ceil(LADDER_BASE * LADDER_RATIO ** k))


def uniform_reservation(reservations: list[int], nodes: list[dict[str, float]], cpu: float,
                        gpu: float = 0.0) -> int | None:
    """max(reservations) if, on every node ({"CPU", "GPU", "memory"} resources), floor(memory / max) trials
    fit at least as often as floor(CPU / cpu) (and floor(GPU / gpu) when gpu > 0): one shape for the
    whole chunk costs no concurrency. None otherwise (each trial keeps its own reservation)."""
    if not reservations or not nodes:
        return None
    largest = max(reservations)
    for node in nodes:
        slots = [math.floor(node.get("CPU", 0.0) / cpu + 1e-9)] if cpu > 0 else []
        slots += [math.floor(node.get("GPU", 0.0) / gpu + 1e-9)] if gpu > 0 else []
        if math.floor(node.get("memory", 0.0) / largest) < min(slots, default=0):
            return None
    return largest


def out_of_memory(used_bytes: float, detail: str = "") -> str:
    """The error text of a trial that ran out of memory: 'out of memory (N GB in use)[; detail]'."""
    return f"{OOM_PREFIX} ({used_bytes / GB:.1f} GB in use)" + (f"; {detail}" if detail else "")


_RAY_OOM = re.compile(r"(?:low on memory|memory monitor|OutOfMemory|out of memory)", re.IGNORECASE)
_RAY_USED = re.compile(r"was ([0-9.]+)GB / ([0-9.]+)GB")


def killed_for_memory(text: str) -> str | None:
    """If Ray's message about a dead worker says it was killed for memory, 'out of memory (N GB in use)'
    with the node's memory in use that Ray reports (the text's own words where it gives no number)."""
    if not _RAY_OOM.search(text):
        return None
    used = _RAY_USED.search(text)
    if used:
        return out_of_memory(float(used.group(1)) * GB, "the worker was killed by Ray's memory monitor")
    return f"{OOM_PREFIX}: {text[:300]}"


class TrialOutOfMemory(BaseException):
    """Raised in a trial that grew past its budget. A BaseException, like KeyboardInterrupt: study.trial
    records any Exception as a failed trial, and this one must reach the worker instead."""


class MemoryGuard:
    """`with MemoryGuard(limit) as guard:` raises TrialOutOfMemory in this thread once this process's
    resident memory exceeds its value at entry by more than `limit` bytes; guard.peak is the largest
    growth seen (bytes)."""

    def __init__(self, limit: int, every: float = 0.05):
        self.limit, self.every = int(limit), every
        self.peak = 0
        self.exceeded = False
        self._process = psutil.Process()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._target = threading.get_ident()
        self._thread = threading.Thread(target=self._watch, name="memory-guard", daemon=True)

    def _rss(self) -> int:
        return self._process.memory_info().rss

    def _watch(self) -> None:
        while not self._stop.wait(self.every):
            growth = self._rss() - self.baseline
            self.peak = max(self.peak, growth)
            if growth > self.limit:
                with self._lock:
                    if not self._stop.is_set():
                        self.exceeded = True
                        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(self._target),
                                                                   ctypes.py_object(TrialOutOfMemory))
                return

    def __enter__(self) -> "MemoryGuard":
        self._target = threading.get_ident()
        self.baseline = self._rss()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        with self._lock:
            self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss() - self.baseline)
