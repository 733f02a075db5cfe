"""kill -9 of a sweep driver that started its own Ray (the overnight case: one machine, no --address),
then the same command again. tests/sweeps covers the same with --address; this adds what a researcher
meets the next morning: Ray's processes died with the driver, and the analysis sees each trial once,
nothing half-written, every file named by a hash."""

from __future__ import annotations

import os
import signal
import uuid

from cli_runs import cli, popen_cli
from .helpers import METADATA_NAME, RECORD_NAME, listing, planned_ids, records, wait_for, wait_for_exit
from study.records import completed_trial_ids

DRIVER_ENV = "RELIABILITY_TEST_DRIVER"


def test_kill_9_of_the_driver_then_the_same_command_gives_exactly_n_records(tmp_path, faults):
    out, n, free = tmp_path / "out", 12, 3
    argv = ("sweep", "smoke", "--out", str(out), "--num-samples", str(n), "--chunk-size", "6",
            "--max-concurrent", "2", "--quiet")
    mark = uuid.uuid4().hex
    faults.hold(free=free)  # the first 3 trials to start run; the others wait in their workers
    driver = popen_cli(*argv, env={DRIVER_ENV: mark})
    try:
        wait_for(lambda: len(completed_trial_ids(str(out))) >= free or driver.poll() is not None, 240,
                 "the first records")
        assert driver.poll() is None
    finally:
        os.kill(driver.pid, signal.SIGKILL)
        text = driver.communicate(timeout=30)[0]
    # Ray's processes (GCS, raylet, workers) die with the driver that started them.
    wait_for_exit(DRIVER_ENV, mark, "the killed driver's Ray processes to exit")
    first = completed_trial_ids(str(out))
    assert len(first) == free, text[-2000:]
    faults.clear()  # the same command again, nothing held
    kept = {t: (out / "trials" / f"{t}.parquet").stat().st_mtime_ns for t in first}

    proc = cli(*argv, timeout=400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"{n} of {n} trials recorded" in proc.stdout and f"{len(first)} already recorded" in proc.stdout
    expected = planned_ids("smoke", n)
    frame = records(out)  # no warning: nothing unreadable or half-written is visible to the analysis
    assert len(frame) == n and set(frame.trial_id) == expected and not frame.trial_id.duplicated().any()
    assert {t: (out / "trials" / f"{t}.parquet").stat().st_mtime_ns for t in first} == kept  # not rerun
    # Every file the two launches wrote is named by a hash; temp files are hidden ('.'-prefixed).
    for table in ("trials", "points", "trajectories"):
        visible = [name for name in listing(out / table) if not name.startswith(".")]
        assert sorted(visible) == sorted(f"{t}.parquet" for t in expected)
        assert all(RECORD_NAME.match(name) for name in visible)
    nets = [name for name in listing(out / "models") if not name.startswith(".")]
    assert sorted(nets) == sorted(f"{t}.safetensors" for t in expected)  # each kept net once
    metadata = [name for name in listing(out / "sweeps") if not name.startswith(".")]
    assert len(metadata) == 2 and all(METADATA_NAME.match(name) for name in metadata), metadata
    assert sorted(listing(out)) == ["models", "points", "sweeps", "trajectories", "trials"]
