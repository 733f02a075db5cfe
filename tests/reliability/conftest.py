"""A two-node local Ray cluster on 127.0.0.1 shared by this package's tests (a Ray start costs seconds on
2 cores), and the check that no process of ours outlives the package.

Each node has one CPU, so two concurrent trials run one on each node. The test process is connected:
in-process sweeps (sweeps.cli.sweep) find Ray initialized and run on it; fault injection runs in a
background thread of the same process.
"""

from __future__ import annotations

import logging
import os
import sys
import time

import psutil
import pytest

from .helpers import LOOPBACK, our_processes

SMALL_NODE = {"num_cpus": 1, "object_store_memory": 96 * 2 ** 20}


class _CurrentStderr:
    """Whatever sys.stderr is when written to."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


@pytest.fixture(scope="package")
def cluster():
    import ray
    from ray._private import ray_constants
    from ray.cluster_utils import Cluster

    if ray.is_initialized():  # another package's cluster (tests run in another order): not ours to share
        ray.shutdown()
    previous = os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER")
    os.environ.update(LOOPBACK)
    ray_constants.ENABLE_RAY_CLUSTER = False
    ray_cluster = Cluster(initialize_head=True, head_node_args={**SMALL_NODE, "include_dashboard": False})
    try:
        ray_cluster.add_node(**SMALL_NODE)
        ray_cluster.wait_for_nodes()
        ray.init(address=ray_cluster.address, logging_level=logging.WARNING)
        for handler in logging.getLogger("ray").handlers:  # Tune logs a killed trial's error here: send it
            if isinstance(handler, logging.StreamHandler):  # to the stderr pytest captures for the current
                handler.setStream(_CurrentStderr())  # test, not to the first test's (closed by then)
        yield ray_cluster
    finally:
        ray.shutdown()
        ray_cluster.shutdown()
        ray_constants.ENABLE_RAY_CLUSTER = True
        if previous is None:
            os.environ.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", None)
        else:
            os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = previous


@pytest.fixture(scope="package", autouse=True)
def nothing_left_behind():
    """After the package: no process of ours (Ray's, drivers) is still alive; any that is gets killed, by pid."""
    yield
    deadline = time.monotonic() + 20
    while our_processes() and time.monotonic() < deadline:
        time.sleep(0.5)
    left = []
    for proc in our_processes():
        try:
            left.append(f"{proc.pid} {proc.name()}")
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    assert not left, f"processes left behind (now killed): {left}"
