"""The tests' local Ray: two one-CPU nodes on 127.0.0.1 (ray.cluster_utils.Cluster, Ray's documented
test utility), with the test process connected, so in-process sweeps run on it and subprocess drivers
join it with --address. Two concurrent trials therefore run one on each node."""

from __future__ import annotations

import contextlib
import logging
import sys
from typing import Iterator

from sweeps.ray_internals import loopback_mode

LOOPBACK = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}  # for subprocess drivers: Ray's servers on 127.0.0.1


def node_args(object_store_mib: int = 96) -> dict:
    return {"num_cpus": 1, "object_store_memory": object_store_mib * 2 ** 20}


class _CurrentStderr:
    """Whatever sys.stderr is when written to (pytest swaps it per test)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


@contextlib.contextmanager
def two_node_cluster(object_store_mib: int = 96) -> Iterator["ray.cluster_utils.Cluster"]:
    """Start the cluster (after shutting down any Ray this process had joined), yield it, stop it."""
    import ray
    from ray.cluster_utils import Cluster

    if ray.is_initialized():  # another package's cluster (tests run in another order): not ours to share
        ray.shutdown()
    with loopback_mode():  # nodes added later (after a node is removed) start in the same mode
        cluster = Cluster(initialize_head=True, head_node_args={**node_args(object_store_mib), "include_dashboard": False})
        try:
            cluster.add_node(**node_args(object_store_mib))
            cluster.wait_for_nodes()
            ray.init(address=cluster.address, logging_level=logging.WARNING)
            for handler in logging.getLogger("ray").handlers:  # Tune logs a killed trial's error here: send it
                if type(handler) is logging.StreamHandler:  # Ray's own, not pytest's capture: to the stderr pytest captures for the current
                    handler.setStream(_CurrentStderr())  # test, not to the first test's (closed by then)
            yield cluster
        finally:
            ray.shutdown()
            cluster.shutdown()
