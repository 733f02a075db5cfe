"""The output location fails: refused up front when it is read-only or full (one line, exit 2, before Ray
starts or anything is written), and when it fills up mid-sweep the trials that cannot be written stay
pending (retried, never half-written), the sweep says so, and the same command completes them later.

Tests run as root here, where chmod does not stop writes: a read-only or a tiny full location is a
tmpfs mounted for the test (root may mount; elsewhere chmod 0555 stands in for read-only, and the full
disk is skipped, the disk filling mid-sweep becomes trials/ turning read-only; RELIABILITY_NO_MOUNT=1
takes the no-mount branches as root). tests/sweeps covers --out under a regular file and under /proc.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from .helpers import Saboteur, listing, planned_ids, records, sweep, wait_for
from sweeps.command import main
from study.records import completed_trial_ids


def _mount(path, options: str) -> bool:
    path.mkdir()
    if os.geteuid() != 0 or not shutil.which("mount") or os.environ.get("RELIABILITY_NO_MOUNT"):
        return False
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True)
    return done.returncode == 0


@pytest.fixture
def tmpfs(tmp_path):
    """mount(name, options) -> a tmpfs at tmp_path/name, or None where this process may not mount; unmounted after."""
    mounted = []

    def make(name: str, options: str):
        path = tmp_path / name
        if not _mount(path, options):
            return None
        mounted.append(path)
        return path

    yield make
    for path in mounted:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(directory) -> None:
    """Write zeros into `directory` until its file system is full."""
    with open(os.path.join(directory, "filler"), "wb") as handle:
        try:
            while True:
                handle.write(bytes(1 << 16))
                handle.flush()
        except OSError:
            pass


def refused(capsys, *argv: str) -> str:
    assert main(list(argv)) == 2
    captured = capsys.readouterr()
    (line,) = captured.err.strip().splitlines()
    return line


def test_a_read_only_output_location_is_refused_up_front(tmpfs, tmp_path, capsys):
    location = tmpfs("ro", "ro,size=1m")
    if location is None:
        if os.geteuid() == 0:
            pytest.skip("cannot mount a read-only tmpfs here, and chmod does not stop root")
        location = tmp_path / "ro"
        location.chmod(0o555)
    for command in (["sweep", "smoke"], ["trial", "--set", "dataset=synthetic", "--no-progress"]):
        line = refused(capsys, *command, "--out", str(location / "res"))
        assert "not writable" in line and str(location / "res") in line, line
    assert listing(location) == []


def test_a_full_output_location_is_refused_up_front(tmpfs, capsys):
    location = tmpfs("full", "size=256k")
    if location is None:
        pytest.skip("needs a small tmpfs (root and mount), to fill it")
    fill(location)
    before = listing(location)
    for command in (["sweep", "smoke"], ["trial", "--set", "dataset=synthetic", "--no-progress"]):
        line = refused(capsys, *command, "--out", str(location / "res"))
        assert "No space left on device" in line and str(location / "res") in line, line
    assert listing(location) == before == ["filler"]


def test_an_output_that_fails_mid_sweep_leaves_trials_pending_and_the_rerun_completes_them(cluster, tmpfs, tmp_path,
                                                                                           capsys, faults):
    """The disk fills up after the first record (where no tmpfs can be mounted: trials/ turns read-only);
    the other trials are held until it is full, so exactly n - 1 cannot be written."""
    location = tmpfs("disk", "size=4m")
    if location is None and os.geteuid() == 0:
        pytest.skip("needs a small tmpfs (root and mount) to fill, or a non-root user for chmod")
    out = (location or tmp_path) / "out"
    n = 6
    argv = ("smoke", "--out", str(out), "--num-samples", str(n), "--seed", "21", "--max-failures", "0")

    faults.hold(free=1)  # the first trial to start runs; the others wait for release()

    def break_the_output() -> None:
        wait_for(lambda: completed_trial_ids(str(out)), 120, "the first record")
        assert len(completed_trial_ids(str(out))) == 1
        if location is not None:
            fill(location)
        else:
            (out / "trials").chmod(0o555)
        faults.release()

    saboteur = Saboteur(break_the_output)
    logged: list[str] = []
    _, report, counts = sweep(*argv, log=logged.append)
    saboteur.check()
    assert report.missing == n - 1 and f"{report.missing} trials have no record yet: run the same command again" in logged[-1]
    assert "error" not in counts  # nothing could be written, not even an error row: the trials stay pending
    cause = "No space left on device" if location is not None else "Permission denied"
    err = capsys.readouterr().err  # why, for each trial given up on
    assert err.count("could not write the error row") == report.missing and cause in err, err[-2000:]
    for table in ("points", "trajectories", "trials"):  # no half-written file left, in any table
        assert not [name for name in listing(out / table) if name.startswith(".")], table

    if location is not None:  # the researcher frees some space (or fixes the permissions) and runs it again
        os.remove(location / "filler")
    else:
        (out / "trials").chmod(0o755)
    recorded = completed_trial_ids(str(out))
    assert len(recorded) == 1
    _, again, counts = sweep(*argv, log=logged.append)
    assert again.missing == 0 and again.skipped == 1 and sum(counts.values()) == n
    frame = records(out)
    assert len(frame) == n and set(frame.trial_id) == planned_ids("smoke", n, 21)
