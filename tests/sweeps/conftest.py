"""One local two-node Ray cluster for the sweep tests (a Ray start costs seconds), on 127.0.0.1 only.

Started by the first test that asks for `ray_cluster` and stopped as soon as the run leaves
tests/sweeps (or at the end of the session), so other packages' tests do not run beside an idle Ray.
In-process sweeps find Ray initialized and use it; subprocess drivers join it with --address. Both
nodes have one CPU, so two concurrent trials run one on each node.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from sweep_helpers import LOOPBACK

HERE = Path(__file__).parent
_state: dict = {}


def _start():
    import ray
    from ray._private import ray_constants
    from ray.cluster_utils import Cluster

    if ray.is_initialized():  # someone else's Ray (another package's tests): not ours to share
        ray.shutdown()
    _state["previous"] = os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER")
    os.environ.update(LOOPBACK)
    ray_constants.ENABLE_RAY_CLUSTER = False
    small = {"num_cpus": 1, "object_store_memory": 128 * 2 ** 20}
    cluster = Cluster(initialize_head=True, head_node_args={**small, "include_dashboard": False})
    _state["cluster"] = cluster
    cluster.add_node(**small)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, logging_level=logging.WARNING)
    return cluster


def _stop() -> None:
    cluster = _state.pop("cluster", None)
    if cluster is None:
        return
    import ray
    from ray._private import ray_constants

    ray.shutdown()
    cluster.shutdown()
    ray_constants.ENABLE_RAY_CLUSTER = True
    previous = _state.pop("previous", None)
    if previous is None:
        os.environ.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", None)
    else:
        os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = previous


@pytest.fixture
def ray_cluster():
    try:
        return _state.get("cluster") or _start()
    except BaseException:
        _stop()
        raise


def pytest_runtest_teardown(item, nextitem):
    if nextitem is None or HERE not in Path(nextitem.path).parents:
        _stop()


def pytest_sessionfinish(session, exitstatus):
    _stop()
