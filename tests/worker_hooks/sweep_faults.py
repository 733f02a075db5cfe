"""Fault injection for the sweep tests, through files in one directory (SWEEP_FAULTS_DIR) that the test
writes and the trial processes read, so a test holds trials where it wants them instead of racing them.

Trial side (`install`, run in each process that imports sweeps.worker, see sitecustomize.py): when the
directory holds rules.json, every attempt of a trial (or a pack) first writes started/<trial_id>-<pid>.json
({"pid", "node"}) and then, if the rules say "hold", takes the next ticket: the first `free` attempts go on,
the others wait until the test writes `release` (or removes the rules). A crash rule makes an attempt kill
its own process after training and measuring, just before it writes its record (the worst moment): "once"
(the first attempt; crashed/<trial_id> keeps its pid) or "always". A balloon rule makes an attempt, before
it trains, allocate (and touch) memory 32 MiB at a time, every 10 ms, up to BALLOON_CAP and hold it up to
BALLOON_HOLD_S: a trial that grows past any budget ("once": its first attempt; "always").

Test side (`Faults`): hold(free), crash(trial_id, how), balloon(trial_id, how), started(), release(), clear().
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

ENV = "SWEEP_FAULTS_DIR"
POLL_S = 0.05
BALLOON_STEP, BALLOON_CAP, BALLOON_HOLD_S = 32 << 20, 4 << 30, 30.0


def _root() -> Path:
    return Path(os.environ[ENV])


def _rules() -> dict | None:
    return _read(_root() / "rules.json")


def _create(path: Path, text: str) -> bool:
    """Create `path` holding `text` unless it exists; True if this call created it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    return True


def _node() -> str | None:
    try:
        import ray

        return ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
    except Exception:
        return None


def _gate(trial_ids: list[str]) -> None:
    rules = _rules()
    if rules is None:
        return
    marker = json.dumps({"pid": os.getpid(), "node": _node(), "trials": trial_ids})
    for trial_id in trial_ids:
        _create(_root() / "started" / f"{trial_id}-{os.getpid()}.json", marker)
    if not rules.get("hold"):
        return
    ticket = 0
    while not _create(_root() / "tickets" / str(ticket), str(os.getpid())):
        ticket += 1
    if ticket < rules.get("free", 0):
        return
    raylet = os.getppid()  # a Ray worker's parent is its node's raylet
    while _rules() is not None and not (_root() / "release").exists():
        if os.getppid() != raylet:  # the node is gone (its driver was killed): a held trial goes with it
            os._exit(1)
        time.sleep(POLL_S)


def _maybe_balloon(trial_id: str) -> None:
    how = ((_rules() or {}).get("balloon") or {}).get(trial_id)
    if how == "always" or (how == "once" and _create(_root() / "ballooned" / trial_id, str(os.getpid()))):
        held, deadline = [], time.monotonic() + BALLOON_HOLD_S
        while time.monotonic() < deadline:
            if len(held) * BALLOON_STEP < BALLOON_CAP:
                held.append(b"\x01" * BALLOON_STEP)  # written, so resident
            time.sleep(0.01)


def _maybe_crash(trial_id: str) -> None:
    how = ((_rules() or {}).get("crash") or {}).get(trial_id)
    if how == "always" or (how == "once" and _create(_root() / "crashed" / trial_id, str(os.getpid()))):
        os._exit(3)


def install() -> None:
    """Wrap study.trial.run_trial, study.packed.run_packed and TrialResult.write with the gates above."""
    import study.packed
    import study.trial

    run_trial, run_packed, write = study.trial.run_trial, study.packed.run_packed, study.trial.TrialResult.write

    def gated_run_trial(cfg, *args, **kwargs):
        _gate([cfg.trial_id])
        _maybe_balloon(cfg.trial_id)
        return run_trial(cfg, *args, **kwargs)

    def gated_run_packed(cfgs, *args, **kwargs):
        _gate([c.trial_id for c in cfgs])
        return run_packed(cfgs, *args, **kwargs)

    def crashing_write(self, location, *args, **kwargs):
        _maybe_crash(self.trial_id)
        return write(self, location, *args, **kwargs)

    study.trial.run_trial, study.packed.run_packed = gated_run_trial, gated_run_packed
    study.trial.TrialResult.write = crashing_write


class Faults:
    """The test's side: write the rules, read who started, release the held."""

    def __init__(self, directory: str | os.PathLike):
        self.root = Path(directory)

    def _write_rules(self, rules: dict) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        temp = self.root / ".rules.tmp"
        temp.write_text(json.dumps(rules))
        os.replace(temp, self.root / "rules.json")

    def _update(self, **changes) -> None:
        self._write_rules({**(_read(self.root / "rules.json") or {}), **changes})

    def watch(self) -> None:
        """Record started markers, change nothing else."""
        self._update()

    def hold(self, free: int = 0) -> None:
        """From now on, every trial attempt after the first `free` waits for release()."""
        self._update(hold=True, free=free)

    def crash(self, trial_id: str, how: str) -> None:
        """Attempts of `trial_id` die just before writing: 'once' (the first) or 'always'."""
        self._add_rule("crash", trial_id, how)

    def balloon(self, trial_id: str, how: str) -> None:
        """Attempts of `trial_id` grow without bound before training: 'once' (the first) or 'always'."""
        self._add_rule("balloon", trial_id, how)

    def _add_rule(self, kind: str, trial_id: str, how: str) -> None:
        rules = dict((_read(self.root / "rules.json") or {}).get(kind) or {})
        rules[trial_id] = how
        self._update(**{kind: rules})

    def release(self) -> None:
        (self.root / "release").touch()

    def started(self) -> list[dict]:
        """One {"pid", "node", "trials"} per attempt that has started, oldest first."""
        folder = self.root / "started"
        found = []
        for path in sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime_ns) if folder.is_dir() else []:
            marker = _read(path)
            if marker and marker not in found:
                found.append(marker)
        return found

    def crashed_pid(self, trial_id: str) -> int | None:
        path = self.root / "crashed" / trial_id
        return int(path.read_text()) if path.exists() else None

    def clear(self) -> None:
        """No rules (held attempts go on), no markers."""
        for name in ("rules.json", "release"):
            (self.root / name).unlink(missing_ok=True)
        for folder in ("started", "tickets", "crashed", "ballooned"):
            for path in (self.root / folder).glob("*") if (self.root / folder).is_dir() else []:
                path.unlink(missing_ok=True)


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None
