"""What runs inside a Ray Tune trial: one study trial, written to the output by the worker itself.

The worker trains and measures with `study.trial.run_trial`, labels the record (sweep, pair, node),
writes the three Parquet tables and the trained net (models/, unless --no-keep-models) atomically
(trials/ last, which marks the trial done), and only then reports to Tune. A pack (`--pack S`: item
{"pack": [S items]}) trains its members' nets together with `study.packed.run_packed` and writes each
member's ordinary record; members already recorded (a retry after a crash between two writes) are not
trained again. A bundle (`--bundle K`: item {"bundle": [K items]}) runs its members, trials or packs, one
after the other, skipping those already recorded. The data set comes from `study.raw_data.load_raw`,
cached per process, so an actor reused for many trials (TuneConfig(reuse_actors=True)) reads it once.
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
from typing import Any

import pandas as pd
import pyarrow.fs as pafs

from study.config import TrialConfig
from study.records import record_path, resolve, write_trial
from study.resources import n_features, release_memory
from study.trial import base_record, close_record
from sweeps.memory import OOM_STATUS, SLACK, MemoryGuard, TrialOutOfMemory, first_use_allowance
from sweeps.units import trial_items


def node_id() -> str:
    """The Ray node id of this process (hostname outside Ray), for the env.node column."""
    try:
        import ray

        if ray.is_initialized():
            return ray.get_runtime_context().get_node_id()
    except Exception:  # pragma: no cover - Ray missing or not a worker
        pass
    return socket.gethostname()


def location() -> str:
    """NODE_IP:PID of this worker (the progress table's loc column)."""
    try:
        import ray

        ip = ray.util.get_node_ip_address()
    except Exception:  # pragma: no cover - Ray missing
        ip = socket.gethostname()
    return f"{ip}:{os.getpid()}"


def sweep_labels(item: dict[str, Any]) -> dict[str, Any]:
    """The columns a sweep's plan adds to a trial row: its pair or twin group, and the sweep."""
    return {"pair_id": item.get("pair_id"), "pair.factor": item.get("pair_factor"), "twin_id": item.get("twin_id"),
            "twin.factor": item.get("twin_factor"), "sweep.id": item.get("sweep_id")}


def labels(item: dict[str, Any]) -> dict[str, Any]:
    """The columns a sweep adds to a trial row: sweep_labels and the node and worker that ran it."""
    return {**sweep_labels(item), "env.node": node_id(), "env.worker": f"{socket.gethostname()}:{os.getpid()}"}


def metrics(record: dict[str, Any]) -> dict[str, Any]:
    """What Tune's progress table shows for a finished trial."""
    def num(key: str) -> float:
        value = record.get(key)
        return math.nan if value is None else float(value)
    return {"status": record["status"], "train_acc": num("train.accuracy"), "gap": num("gap.loss"),
            "jacobian": num("measure.jacobian_test"), "loc": location()}


def pack_metrics(records: list[dict[str, Any]]) -> dict[str, Any]:
    """What Tune's progress table shows for a finished pack: statuses counted, the numbers averaged."""
    rows = [metrics(r) for r in records]
    statuses = {}
    for row in rows:
        statuses[row["status"]] = statuses.get(row["status"], 0) + 1
    mean = {k: math.fsum(r[k] for r in rows) / len(rows) if rows else math.nan
            for k in ("train_acc", "gap", "jacobian")}
    return {"status": " ".join(f"{s}:{n}" for s, n in statuses.items()), **mean, "trials": len(rows),
            "loc": location()}


def _train_pack(item: dict[str, Any], run: dict[str, Any]) -> list[dict[str, Any]]:
    from study.packed import run_packed

    members = [m for m in item["pack"] if not _recorded(run["out"], m["id"])]
    if not members:
        return []
    results = run_packed([TrialConfig(**m["cfg"]) for m in members], device=run["device"],
                         data_root=run.get("data_root"), threads=run["threads"],
                         skip_measures=run.get("skip_measures", ()))
    for member, result in zip(members, results):
        result.record.update(labels(member))
        result.write(run["out"], keep_model=run.get("keep_models", True))
    return [r.record for r in results]


def _train(item: dict[str, Any], run: dict[str, Any]) -> list[dict[str, Any]]:
    """Train, measure and write one study trial or pack; the records written."""
    from study.trial import run_trial  # looked up per call, so a wrapper installed after this import applies

    if "pack" in item:
        return _train_pack(item, run)
    cfg = TrialConfig(**item["cfg"])
    result = run_trial(cfg, device=run["device"], data_root=run.get("data_root"), threads=run["threads"],
                       skip_measures=run.get("skip_measures", ()))
    result.record.update(labels(item))
    result.write(run["out"], keep_model=run.get("keep_models", True))
    return [result.record]


def _run(item: dict[str, Any], run: dict[str, Any]) -> dict[str, Any]:
    """Train, measure and write one study trial, pack or bundle; what the progress table shows of it. A
    bundle runs its members one after the other, each written as it finishes; a member already recorded (a
    rerun of a bundle whose worker died) is skipped, and the memory a member left is handed back before
    the next."""
    if "bundle" not in item:
        records = _train(item, run)
        return metrics(records[0]) if "pack" not in item else pack_metrics(records)
    records = []
    for member in item["bundle"]:
        if "pack" not in member and _recorded(run["out"], member["id"]):
            continue
        records += _train(member, run)
        release_memory()
    return pack_metrics(records)


def trainable(config: dict[str, Any]) -> None:
    """The Tune function trainable. config = {"item": {id, cfg, pair_id, pair_factor, twin_id, twin_factor,
    sweep_id, memory} or {id, pack: [items], n, memory} or {id, bundle: [items], n, memory}, "run": {...}}.
    A trial that grows past SLACK times its memory reservation is stopped and reports status "oom" with the
    peak it reached (sweeps.memory), no record. After each trial the worker gives back the memory it left
    (study.resources.release_memory)."""
    from ray import tune

    item, run = config["item"], config["run"]
    guard = None
    if item.get("memory"):
        first = TrialConfig(**trial_items(item)[0]["cfg"])
        guard = MemoryGuard(int(SLACK * item["memory"]) + first_use_allowance(first.dataset, n_features(first)))
    try:
        with guard if guard is not None else contextlib.nullcontext():
            shown = _run(item, run)
    except TrialOutOfMemory:
        shown = {"status": OOM_STATUS, "oom_bytes": guard.peak, "loc": location()}
    release_memory()  # the actor lives on for the next trial: hand back what this one left
    tune.report(shown)


def error_record(item: dict[str, Any], message: str) -> dict[str, Any]:
    """The trial row the driver writes when Tune gave up on a trial (its worker died every attempt)."""
    cfg = TrialConfig(**item["cfg"])
    record = base_record(cfg)
    record.update({"error": message, **sweep_labels(item)})
    return close_record(cfg, record).record


def _recorded(out: str, trial_id: str) -> bool:
    fs, root = resolve(out)
    return fs.get_file_info(record_path(root, "trials", trial_id)).type != pafs.FileType.NotFound


def write_error(out: str, item: dict[str, Any], message: str) -> bool:
    """Write an error row for `item` unless a record already exists; True if written. Not for packs or
    bundles: write one for each of their trials (sweeps.units.trial_items)."""
    if _recorded(out, item["id"]):
        return False
    empty_points, empty_trajectories = pd.DataFrame(columns=["split", "index"]), pd.DataFrame(columns=["kind"])
    write_trial(out, item["id"], error_record(item, message), empty_points, empty_trajectories)
    return True
