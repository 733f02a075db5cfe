"""Nothing is exposed to the network, nothing from the results directory is unpickled or evaluated, and
every file name a sweep writes comes from a hash.

Ray's local mode, as `sensitivity sweep` starts it without --address (sweeps.cluster.ray_session): every
Ray process (GCS, raylet, workers, the runtime-env agent) and the driver listen on 127.0.0.1 only, Ray's
node IP is 127.0.0.1, there is no dashboard, and no usage statistics go to Ray's servers.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from ray_cluster import LOOPBACK
from .helpers import EXIT_TIMEOUT_S, alive, wait_for

ROOT = Path(__file__).resolve().parents[2]

LOCAL_RAY = """
import os, sys
from sweeps.cluster import ray_session
with ray_session(None) as started:
    import ray
    @ray.remote(num_cpus=0)
    class Worker:  # an actor's process lives as long as the actor: the test reads it while this driver waits
        def pid(self):
            return os.getpid()
    workers = [Worker.remote() for _ in range(2)]
    print(started, ray.util.get_node_ip_address(), *ray.get([w.pid.remote() for w in workers]), flush=True)
    sys.stdin.readline()  # hold Ray (and the actors) up while the test looks at the sockets
"""


def _loopback(ip: str) -> bool:
    return ip.startswith("127.") or ip in ("::1", "::ffff:127.0.0.1") or ip.startswith("::ffff:127.")


def snapshot(root: int) -> dict[int, dict]:
    """{pid: name, cmdline, environ, process} of `root` and its descendants, each read once; a process that
    exits meanwhile (a short-lived Ray helper) is left out."""
    found = {}
    try:
        tree = [psutil.Process(root), *psutil.Process(root).children(recursive=True)]
    except psutil.Error:
        return found
    for proc in tree:
        try:
            with proc.oneshot():
                found[proc.pid] = {"name": proc.name(), "cmdline": proc.cmdline(), "environ": proc.environ(),
                                   "process": proc}
        except psutil.Error:  # NoSuchProcess, ZombieProcess, AccessDenied
            pass
    return found


def test_the_local_ray_of_a_sweep_listens_on_loopback_only_and_leaves_nothing_behind(tmp_path):
    without_loopback = {k: v for k, v in os.environ.items() if k not in (*LOOPBACK, "RAY_AUTH_MODE")}  # set by it
    stderr = tmp_path / "stderr.txt"
    with open(stderr, "w") as sink:
        driver = subprocess.Popen([sys.executable, "-c", LOCAL_RAY], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=sink, text=True, cwd=ROOT, env=without_loopback)
    try:
        started, node_ip, *worker_pids = driver.stdout.readline().split()
        assert started == "True" and node_ip == "127.0.0.1"
        ours = snapshot(driver.pid)
        assert {int(w) for w in worker_pids} <= set(ours)  # the actors, alive while the driver waits
        names = " ".join(p["name"] for p in ours.values())
        assert "raylet" in names and "gcs_server" in names
        sockets = [c for c in psutil.net_connections(kind="inet") if c.pid in ours]
        listening = [c for c in sockets if c.status == psutil.CONN_LISTEN or c.type == 2]  # TCP listen, or UDP
        assert len(listening) >= 4  # GCS, raylet, driver, workers
        exposed = [(ours[c.pid]["name"], c.laddr) for c in listening if not _loopback(c.laddr.ip)]
        assert not exposed, f"listening beyond loopback: {exposed}"
        assert {c.pid for c in listening} & {int(w) for w in worker_pids}  # the workers' own sockets were seen
        # No dashboard: Ray runs its dashboard head headless (--minimal --disable-frontend, only to send usage
        # statistics) and the dashboard agent minimal; neither listens, not even on 127.0.0.1.
        assert not [c for c in listening if c.laddr.port in (8265, 52365)]
        heads = [p for p in ours.values() if any(a.endswith("dashboard.py") for a in p["cmdline"])]
        assert all({"--minimal", "--disable-frontend"} <= set(p["cmdline"]) for p in heads)
        # ... and its usage statistics are off (sweeps.cluster sets RAY_USAGE_STATS_ENABLED=0 for the Ray it starts).
        assert heads and all(p["environ"].get("RAY_USAGE_STATS_ENABLED") == "0" for p in heads)
        # Token authentication on (Ray's default for a new local cluster; only its notice is dropped).
        assert all(p["environ"].get("RAY_AUTH_MODE") == "token" for p in heads)
    finally:
        driver.stdin.close()
        driver.wait(60)
    # Ray stopped with its driver: none of its processes is left.
    rest = [p["process"] for pid, p in ours.items() if pid != driver.pid]
    wait_for(lambda: not any(map(alive, rest)), EXIT_TIMEOUT_S, "the sweep's Ray processes to exit", every=0.5)
    assert "Token authentication" not in stderr.read_text()  # what every sweep's output began with


# -- static checks of our own sources ---------------------------------------------------------------

SOURCES = ("study", "sweeps", "analysis")

# (file, call) -> why it is safe; none today. Outside our sources: torchvision's CIFAR loader unpickles the
# CIFAR batches under --data-root (the user's data set, never the results directory), and Ray itself
# pickles task arguments, results and a failed trial's error (in the driver's private temporary directory,
# read back through Tune's public ResultGrid) between its processes (on 127.0.0.1, see above).
ALLOWED: dict[tuple[str, str], str] = {}

UNPICKLERS = {"pickle.load", "pickle.loads", "cloudpickle.load", "cloudpickle.loads", "dill.load", "dill.loads",
              "joblib.load", "marshal.load", "marshal.loads", "shelve.open", "pd.read_pickle",
              "pandas.read_pickle", "yaml.unsafe_load", "yaml.full_load"}


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return "?"


def _keyword(call: ast.Call, name: str) -> ast.AST | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def unsafe_calls(path: Path) -> list[str]:
    """Calls in one source file that would run code from a file's contents: unpickling, torch.load in any form
    (weights_only=True restricts the unpickler, but our weights are safetensors: no pickle at all), yaml.load
    without a safe loader, numpy's allow_pickle=True, eval and exec."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        loader, allow = (_keyword(node, k) for k in ("Loader", "allow_pickle"))
        bad = (name in UNPICKLERS
               or name in ("eval", "exec", "builtins.eval", "builtins.exec")
               or name == "torch.load"
               or (name == "yaml.load" and not (loader is not None and "Safe" in _dotted(loader)))
               or (name in ("np.load", "numpy.load") and isinstance(allow, ast.Constant) and allow.value is True))
        if bad:
            found.append(name)
    return found


def test_our_sources_never_unpickle_or_evaluate_what_they_read():
    found = {}
    for package in SOURCES:
        for path in sorted((ROOT / package).rglob("*.py")):
            for call in unsafe_calls(path):
                found[(path.relative_to(ROOT).as_posix(), call)] = found.get((path.relative_to(ROOT).as_posix(), call), 0) + 1
    assert set(found) <= set(ALLOWED), {k: v for k, v in found.items() if k not in ALLOWED}
    assert sum(found.values()) == len(ALLOWED)  # each exception is one call


def test_the_static_check_sees_each_unsafe_form(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("import pickle, torch, yaml, numpy as np\n"
                      "pickle.load(f)\ntorch.load(p)\ntorch.load(p, weights_only=False)\nyaml.load(s)\n"
                      "np.load(p, allow_pickle=True)\neval('1')\nmodel.eval()\n"
                      "torch.load(p, map_location='cpu', weights_only=True)\nyaml.load(s, Loader=yaml.SafeLoader)\n")
    assert unsafe_calls(sample) == ["pickle.load", "torch.load", "torch.load", "yaml.load", "np.load", "eval",
                                    "torch.load"]


def test_every_string_field_of_a_trial_config_is_a_choice():
    """File names are trial ids (sha256 of the config); no free-text field can carry a path into anything."""
    from dataclasses import fields

    from study.config import ConfigError, TrialConfig

    text_fields = [f.name for f in fields(TrialConfig) if f.type == "str"]
    assert text_fields
    for name in text_fields:
        with pytest.raises(ConfigError, match=f"unknown {name} '../x'; allowed: "):
            TrialConfig.from_dict({name: "../x"})
    assert len(TrialConfig().trial_id) == 16 and set(TrialConfig().trial_id) <= set("0123456789abcdef")
