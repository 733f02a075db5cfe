"""A two-node local Ray cluster on 127.0.0.1 shared by this package's tests (tests/ray_cluster.py; a Ray
start costs seconds on 2 cores), and the check that no process of ours outlives the package.

The test process is connected: in-process sweeps (sweeps.cli.sweep) find Ray initialized and run on it;
fault injection runs in a background thread of the same process, or through the `faults` fixture.
"""

from __future__ import annotations

import time

import psutil
import pytest
from ray_cluster import two_node_cluster

from .helpers import describe, our_processes


@pytest.fixture(scope="package")
def cluster():
    with two_node_cluster(object_store_mib=96) as ray_cluster:
        yield ray_cluster


@pytest.fixture(scope="package", autouse=True)
def nothing_left_behind():
    """After the package: no process of ours (Ray's, drivers) is still alive; any that is gets killed, by pid."""
    yield
    deadline = time.monotonic() + 20
    while our_processes() and time.monotonic() < deadline:
        time.sleep(2)  # a look reads every process's environment: not too often (helpers.wait_for_exit)
    left = []
    for proc in our_processes():
        left.append(describe(proc))
        try:
            proc.kill()
        except psutil.Error:  # exited meanwhile
            pass
    assert not left, f"processes left behind (now killed): {left}"
