"""Helpers of the reliability tests: sweeps in-process or as a CLI subprocess, fault injection in a
background thread, our own Ray processes (found by a token in their environment), records.

Processes are read without races: each one once (psutil's oneshot), and one that exits or turns zombie
while it is read is simply not there (NoSuchProcess, ZombieProcess, AccessDenied)."""

from __future__ import annotations

import os
import re
import threading
import time
import uuid
import warnings
from typing import Callable

import psutil
from cli_runs import sweep_args

# Every process this test session starts (Ray's included, whoever spawns them) inherits this token,
# so "no process left behind" is checked on ours only: the machine is shared with other Ray users.
TOKEN_ENV = "RELIABILITY_TEST_TOKEN"
os.environ.setdefault(TOKEN_ENV, uuid.uuid4().hex)
RECORD_NAME = re.compile(r"^[0-9a-f]{16}\.parquet$")
METADATA_NAME = re.compile(r"^[0-9a-f]{12}-\d{8}T\d{6}Z-\d+\.json$")


def sweep(*argv: str, log: Callable[[str], None] = lambda text: None):
    """`sensitivity sweep ARGV` in this process (on the package's cluster): (plan, report, counts)."""
    from sweeps.cli import sweep as run

    return run(sweep_args(*argv), log=log)


def wait_for(condition: Callable[[], object], timeout: float, what: str, every: float = 0.05):
    """Poll `condition` until it returns something true; AssertionError naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


class Saboteur(threading.Thread):
    """Runs `action` in the background while the test's main thread runs a sweep; `.check()` re-raises
    whatever the action raised, so a fault that was never injected fails the test."""

    def __init__(self, action: Callable[[], object]):
        super().__init__(daemon=True)
        self.action, self.result, self.error = action, None, None
        self.start()

    def run(self) -> None:
        try:
            self.result = self.action()
        except BaseException as exc:  # handed to the main thread by check()
            self.error = exc

    def check(self, timeout: float = 30):
        self.join(timeout)
        assert not self.is_alive(), "the fault injection did not finish"
        if self.error is not None:
            raise self.error
        return self.result


EXIT_TIMEOUT_S = 90  # Ray's processes notice their driver's death within seconds alone, slower on a loaded machine


def wait_for_exit(key: str, value: str, what: str, timeout: float = EXIT_TIMEOUT_S) -> None:
    """Wait until no process of ours with `key`=`value` in its environment is alive; on timeout the
    AssertionError names the ones left (pid, name, command line)."""
    try:
        # Every 2 s: each look reads every process's environment, and looking every 0.5 s kept the killed
        # driver's Ray processes alive about a minute longer on 2 cores (test_driver_kill: 95 s vs 40 s).
        wait_for(lambda: not our_processes(key, value), timeout, what, every=2)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; still running: {[describe(p) for p in our_processes(key, value)]}") from None


def alive(proc: psutil.Process) -> bool:
    """Whether `proc` still runs: is_running() compares the start time too, so a reused pid is not
    mistaken for ours; a zombie (exited, not yet reaped, as a worker is when its raylet is killed) is gone."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def describe(proc: psutil.Process) -> str:
    """'PID NAME COMMAND LINE' read at once; what could not be read (the process left) is left out."""
    try:
        with proc.oneshot():
            return f"{proc.pid} {proc.name()} {' '.join(proc.cmdline())[:200]}"
    except psutil.Error:
        return f"{proc.pid} (exited)"


def our_processes(key: str = TOKEN_ENV, value: str | None = None) -> list[psutil.Process]:
    """Live processes, other than this one, whose environment has `key`=`value` (default: this session's
    token: Ray's processes and subprocess drivers of this session). Zombies count as gone."""
    value, found = value or os.environ[key], []
    for proc in psutil.process_iter():
        if proc.pid == os.getpid():
            continue
        try:
            with proc.oneshot():
                if proc.status() != psutil.STATUS_ZOMBIE and proc.environ().get(key) == value:
                    found.append(proc)
        except psutil.Error:  # NoSuchProcess, ZombieProcess, AccessDenied: not one we can count
            pass
    return found


def records(out) -> "pd.DataFrame":
    """The trials table through the analysis loader; fails if it warned about any file."""
    from analysis.load import load_trials

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        frame = load_trials(str(out))
    assert not caught, [str(w.message) for w in caught]
    return frame


def listing(directory) -> list[str]:
    """Every name in `directory`, hidden ones included."""
    return sorted(os.listdir(directory)) if os.path.isdir(directory) else []


def planned_ids(preset: str, n: int, seed: int = 0, sets: tuple[str, ...] = ()) -> set[str]:
    from sweeps.presets import get_preset
    from sweeps.sampling import parse_overrides, sample

    return {t.trial_id for t in sample(get_preset(preset), parse_overrides(list(sets)), seed, n).trials}
