"""Soak: one sweep of 1000 smoke trials, as a researcher runs it (`sensitivity sweep`, its own local Ray).
Deselected by default (pyproject addopts); `make soak` runs it, for several minutes on 2 cores.

Checks that every record arrives (exactly one per planned trial, readable, no analysis warning), that the
driver's memory stays flat (its resident memory, sampled twice a second, peaks no higher in the last
chunk than in the first, each chunk being its own Tune experiment, nor in the summary that reads the N
records at the end), and that no process of the sweep (driver, GCS, raylet, workers) outlives it.
Prints the figures.
"""

from __future__ import annotations

import re
import threading
import time
import uuid

import psutil
import pytest

from cli_runs import popen_cli
from .helpers import RECORD_NAME, listing, planned_ids, records, wait_for_exit

N, CHUNK = 1000, 250
DRIVER_ENV = "RELIABILITY_TEST_DRIVER"
CHUNK_LINE = re.compile(r"^chunk (\d+)/(\d+): (\d+) trials in ([\d.]+) s.*driver RSS (\d+) MiB \(peak (\d+) MiB\)")
MIB = 2 ** 20


@pytest.mark.soak
def test_a_thousand_trials_arrive_with_flat_driver_memory_and_nothing_left_behind(tmp_path, capsys):
    out, mark = tmp_path / "out", uuid.uuid4().hex
    start = time.monotonic()
    driver = popen_cli("sweep", "smoke", "--out", str(out), "--num-samples", str(N), "--chunk-size", str(CHUNK),
                       "--max-concurrent", "2", "--quiet", env={DRIVER_ENV: mark})
    process = psutil.Process(driver.pid)
    samples: list[tuple[float, float]] = []  # (seconds since start, driver RSS in MiB)
    chunk_ends: list[float] = []
    lines: list[str] = []

    def sample() -> None:
        while driver.poll() is None:
            try:
                samples.append((time.monotonic() - start, process.memory_info().rss / MIB))
            except psutil.NoSuchProcess:
                return
            time.sleep(0.5)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    for line in driver.stdout:  # the driver's own report, as it comes
        lines.append(line.rstrip())
        if CHUNK_LINE.match(line):
            chunk_ends.append(time.monotonic() - start)
    rc = driver.wait(60)
    wall = time.monotonic() - start
    sampler.join(5)
    text = "\n".join(lines)
    assert rc == 0, text[-3000:]

    # every record arrives, once
    expected = planned_ids("smoke", N)
    frame = records(out)
    lost = len(expected - set(frame.trial_id))
    assert lost == 0 and len(frame) == N and not frame.trial_id.duplicated().any()
    for table in ("trials", "points", "trajectories"):
        visible = [n for n in listing(out / table) if not n.startswith(".")]
        assert len(visible) == N and all(RECORD_NAME.match(n) for n in visible)
    assert f"{N} of {N} trials recorded" in text

    # driver memory: the last chunk peaks no higher than the first (10% + 32 MiB of slack for noise)
    chunks = [CHUNK_LINE.match(line) for line in lines if CHUNK_LINE.match(line)]
    assert len(chunks) == N // CHUNK and len(chunk_ends) == len(chunks)
    first = [rss for t, rss in samples if t <= chunk_ends[0]]
    last = [rss for t, rss in samples if chunk_ends[-2] < t <= chunk_ends[-1]]
    assert first and last
    after_chunk = [int(m.group(5)) for m in chunks]
    peak = max(rss for _, rss in samples)
    assert max(last) <= 1.10 * max(first) + 32, (max(first), max(last))
    assert after_chunk[-1] <= 1.10 * after_chunk[0] + 32, after_chunk
    assert peak <= 1.10 * max(first) + 64, (max(first), peak)  # the summary at the end reads N records, too

    # nothing left behind: the driver's Ray went down with it
    wait_for_exit(DRIVER_ENV, mark, "the sweep's processes to exit")

    statuses = frame.status.value_counts().to_dict()
    with capsys.disabled():
        print(f"\nsoak: {N} trials ({statuses}) in {wall:.0f} s wall ({N / wall * 3600:.0f} trials/hour), "
              f"{len(chunks)} chunks of {CHUNK} in {', '.join(m.group(4) for m in chunks)} s; driver RSS peak "
              f"{peak:.0f} MiB (first chunk {max(first):.0f}, last chunk {max(last):.0f}, after the last chunk "
              f"{max([rss for t, rss in samples if t > chunk_ends[-1]] or [0]):.0f}; after each chunk "
              f"{after_chunk} MiB); records lost 0, duplicated 0; processes left 0")
