"""The two things this package needs from Ray that Ray has no public API for, kept here and nowhere else.

Tested against the Ray pinned in pyproject.toml. If a Ray upgrade moves either of them, the sweep tests
that start a local Ray or join one by address fail (tests/reliability/test_safety.py checks the loopback
binding, tests/sweeps/test_cli_errors.py the address resolution): fix them here.

1. `bootstrap_address`: what `ray.init(address=...)` would connect to, without connecting. Ray resolves
   'auto' through RAY_ADDRESS or the file `ray start` leaves under /tmp/ray, and rewrites 127.0.0.1 to the
   machine's routable address; we need that answer first, to refuse a dead address in a bounded wait
   instead of letting ray.init retry for a minute. Uses ray._private.services.canonicalize_bootstrap_address;
   if it moves, resolution of --address fails with an ImportError/AttributeError.
2. `loopback_mode`: Ray's single-machine mode (every server bound to 127.0.0.1, the default on macOS and
   Windows) on Linux. It is the environment variable RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 for the Ray
   processes a driver starts, but Ray reads it once, into ray._private.ray_constants.ENABLE_RAY_CLUSTER,
   when ray is first imported; a driver that has already imported ray must set that flag too. If the flag
   is renamed, setting it is a no-op and Ray listens on every interface again (test_safety fails).
"""

from __future__ import annotations

import contextlib
import os
from typing import Iterator

LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # "0": Ray's single-machine mode, every server on 127.0.0.1


def bootstrap_address(address: str) -> str | None:
    """'auto' or HOST:PORT -> the HOST:PORT Ray would connect to (None: 'auto' and no cluster found)."""
    from ray._private import services

    return services.canonicalize_bootstrap_address(address)


@contextlib.contextmanager
def loopback_mode(enabled: bool = True) -> Iterator[None]:
    """Ray's single-machine mode for this process and the Ray processes it starts, while the block runs."""
    if not enabled:
        yield
        return
    from ray._private import ray_constants

    previous_env, previous_flag = os.environ.get(LOOPBACK_ENV), ray_constants.ENABLE_RAY_CLUSTER
    os.environ[LOOPBACK_ENV] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = previous_flag
        if previous_env is None:
            os.environ.pop(LOOPBACK_ENV, None)
        else:
            os.environ[LOOPBACK_ENV] = previous_env
