"""Joining a Ray cluster or starting a private one, and checking it can run the sweep's trials.

Without --address the sweep starts Ray on this machine, bound to 127.0.0.1, without a dashboard, and
stops it at the end (a driver killed with -9 takes it down too: Ray's reaper). With --address it joins
an existing cluster (`auto`: RAY_ADDRESS or the cluster `ray start` left on this machine) after
checking, with a bounded wait, that something answers there.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import socket
from typing import Any, Iterator

from study.config import ConfigError
from study.resources import GIB, ResourceError, check_memory
from sweeps.ray_internals import bootstrap_address, loopback_mode
from sweeps.runner import RunSettings
from sweeps.sampling import PlannedTrial

CONNECT_TIMEOUT_S = 5.0
FORWARDED_ENV_PREFIXES = ("AWS_", "SENSITIVITY_")  # credentials and data root travel to the workers
USAGE_STATS_ENV = "RAY_USAGE_STATS_ENABLED"  # Ray's documented switch; "0": no usage statistics to Ray's servers


def _forwarded_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith(FORWARDED_ENV_PREFIXES)}


def _answers(host: str, port: int) -> OSError | None:
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S):
            return None
    except OSError as exc:
        return exc


def resolve_address(address: str) -> tuple[str, bool]:
    """'auto' or HOST:PORT -> (HOST:PORT, loopback), or ConfigError if no Ray cluster answers (bounded wait).

    Ray rewrites 127.0.0.1 into the machine's routable address; a cluster started in Ray's
    single-machine mode (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, as `sensitivity sweep` without --address
    starts one) answers on 127.0.0.1 only: then `loopback` is True and the driver joins in that mode."""
    try:
        resolved = bootstrap_address(address)
    except Exception as exc:
        text = str(exc).strip().strip("'\"").splitlines()
        raise ConfigError(f"--address {address}: {text[0] if text else type(exc).__name__}") from None
    if resolved is None:
        raise ConfigError("--address auto: no running Ray cluster found (RAY_ADDRESS is unset and none was "
                          "started with `ray start` on this machine); start one or give HOST:PORT")
    host, _, port_text = resolved.rpartition(":")
    given_host = address.rpartition(":")[0]
    try:
        port = int(port_text)
    except ValueError:
        raise ConfigError(f"--address {address}: the port must be a number; use auto or HOST:PORT") from None
    error = _answers(host, port)
    if error is None:
        return resolved, False
    if given_host in ("127.0.0.1", "localhost", "::1") and _answers("127.0.0.1", port) is None:
        return f"127.0.0.1:{port}", True
    via = "" if resolved == address else f" (as {resolved})"
    raise ConfigError(f"--address {address}: no Ray cluster answers there{via}: {error.__class__.__name__}"
                      f"{': ' + str(error) if str(error) else ''}; check `ray status` on the head node")


def require_ray(command: str) -> None:
    """ConfigError (one line) where Ray does not import: `sensitivity trial`, `analyze` and study/ run
    without it (a GPU image often has none), `command` does not."""
    try:
        import ray  # noqa: F401
    except ImportError as exc:
        raise ConfigError(f"sensitivity {command} runs on Ray, which does not import here ({exc}); install it "
                          "(make setup does: ray[tune]==2.60.0) or run single trials with `sensitivity trial`") from None


TOKEN_NOTICE = "Token authentication is enabled for this Ray cluster"  # Ray's warning, first on every output


@contextlib.contextmanager
def _quiet_token_notice() -> Iterator[None]:
    """Drop Ray's notice that a new local cluster turned token authentication on (it stays on: that is Ray's
    default, and this Ray is ours alone); every other message of that logger, and the mode, are left alone."""
    logger = logging.getLogger("ray._private.authentication.authentication_token_setup")

    def keep(record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(TOKEN_NOTICE)
    logger.addFilter(keep)
    try:
        yield
    finally:
        logger.removeFilter(keep)


@contextlib.contextmanager
def ray_session(address: str | None, num_cpus: int | None = None) -> Iterator[bool]:
    """Join the cluster at `address`, or start a local Ray bound to 127.0.0.1 without a dashboard.

    Yields True if Ray was started or joined here (and is shut down on exit); an already initialized
    Ray (a notebook, the tests) is used as it is and left running."""
    import ray

    if ray.is_initialized():
        yield False
        return
    os.environ.setdefault(USAGE_STATS_ENV, "0")  # before Ray starts: the Ray processes inherit it
    env = _forwarded_env()
    kwargs: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": True}
    if env:
        kwargs["runtime_env"] = {"env_vars": env}
    if address:
        resolved, loopback = resolve_address(address)
        try:
            with loopback_mode(loopback):
                ray.init(address=resolved, **kwargs)
        except Exception as exc:
            text = str(exc).strip().splitlines()
            raise ConfigError(f"--address {address}: cannot join the Ray cluster at {resolved}: "
                              f"{text[0] if text else type(exc).__name__}") from None
    else:
        # A private Ray on this machine, on 127.0.0.1 only, no dashboard. Ray turns
        # _node_ip_address="127.0.0.1" into the machine's routable address and listens on all
        # interfaces; its single-machine mode (the default on macOS and Windows) binds every server
        # to the loopback address instead, and Ray's processes inherit it.
        with loopback_mode(True), _quiet_token_notice():
            ray.init(address="local", num_cpus=num_cpus, include_dashboard=False,
                     object_store_memory=256 * 2 ** 20, **kwargs)
    try:
        yield True
    finally:
        ray.shutdown()


def _slots(resources: dict[str, float], settings: RunSettings) -> int:
    slots = math.floor(resources.get("CPU", 0.0) / settings.cpus_per_trial + 1e-9) if settings.cpus_per_trial else 10 ** 6
    if settings.gpus_per_trial > 0:
        slots = min(slots, math.floor(resources.get("GPU", 0.0) / settings.gpus_per_trial + 1e-9))
    if settings.max_concurrent:
        slots = min(slots, settings.max_concurrent)
    return slots


def cluster_slots(settings: RunSettings) -> int:
    """How many trials of `settings`' shape the live nodes of the Ray cluster run at once (at least 1)."""
    import ray

    return max(1, sum(_slots(n["Resources"], settings) for n in ray.nodes() if n.get("Alive")))


def check_resources(trials: list[PlannedTrial], settings: RunSettings, joined: bool) -> list[str]:
    """ConfigError unless some node can run a trial and every config fits what a trial may reserve.

    On the CPU a trial reserves its estimated memory as Ray's `memory` resource (sweeps.memory), so Ray
    runs on a node only as many as fit; a config must fit the largest node's memory. On GPUs it must fit
    the driver's free GPU memory times --gpus-per-trial (checked only when the driver sees a GPU).
    Returns notes to print."""
    import ray

    notes = []
    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    capable = [r for r in nodes if _slots(r, settings) >= 1]
    if not capable:
        what = f"{settings.cpus_per_trial:g} CPU" + (f" and {settings.gpus_per_trial:g} GPU" if settings.gpus_per_trial else "")
        text = f"no node of the Ray cluster has {what} for a trial (--cpus-per-trial / --gpus-per-trial)"
        if not joined:
            raise ConfigError(text + f"; this machine has {os.cpu_count()} CPUs")
        notes.append(f"note: {text} yet; trials wait for the autoscaler")
        return notes
    if settings.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            notes.append("note: the driver sees no GPU; trial memory is checked on the workers")
            return notes
        free, _ = torch.cuda.mem_get_info()
        have, where = int(free * 0.9 * min(1.0, settings.gpus_per_trial)), "a trial's share of GPU memory"
    else:
        have, where = int(max(r.get("memory", 0.0) for r in capable)), "the memory of any node"
    import torch

    device = torch.device(settings.device)
    failing = []
    for planned in trials:
        try:
            check_memory(planned.config, device, available=have)
        except ResourceError as exc:
            failing.append(str(exc))
    if failing:
        raise ConfigError(f"{len(failing)} of {len(trials)} sampled configs do not fit {where} "
                          f"({have / GIB:.2f} GiB), e.g. {failing[0]}")
    return notes
