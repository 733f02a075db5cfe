"""One local two-node Ray cluster for the sweep tests (a Ray start costs seconds), on 127.0.0.1 only.

Started by the first test that asks for `ray_cluster` and stopped as soon as the run leaves
tests/sweeps (or at the end of the session), so other packages' tests do not run beside an idle Ray.
In-process sweeps find Ray initialized and use it; subprocess drivers join it with --address. Both
nodes have one CPU, so two concurrent trials run one on each node.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from ray_cluster import two_node_cluster

HERE = Path(__file__).parent
_state: dict = {}


def _start():
    stack = contextlib.ExitStack()
    _state["stack"] = stack
    _state["cluster"] = stack.enter_context(two_node_cluster(object_store_mib=128))
    return _state["cluster"]


def _stop() -> None:
    _state.pop("cluster", None)
    stack = _state.pop("stack", None)
    if stack is not None:
        stack.close()


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
