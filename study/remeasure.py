"""Measures computed after the trials, from the kept nets (study.weights), with no training.

A finished sweep gains a measure (a new one, or a new version of one) without retraining: for each trial
with a kept net, `measure_kept` loads the net and the trial's data (both functions of the config), runs
the measures asked for on the same MeasureContext a trial uses, and writes each measure's values as
its own parts, `measures/<name>-v<version>/{points,trajectories,trials}/<trial_id>.parquet` (study.records:
atomic, the trials part last, so its presence means the value is complete). A measure that raises
writes nothing: its value stays missing and the next run tries again. The analysis loader joins the
parts to the tables, newest version first (analysis.versions).

`plan` decides what is missing. By default, for each registered measure, the trials whose newest values
(in the trial row's version.<name>, or a part) come from an older version than the registered one, or
that have none; with names given, those measures for every trial that has no part of the current
version yet (a recomputation, done once). Only trials that fit or ran out of steps (status ok or
not_fit) are measured: a diverged net has no measures, an errored trial no complete record.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from typing import Iterable

import pandas as pd
import torch

from study import measures as registry
from study.data import load_dataset
from study.measures import MeasureContext
from study.records import write_measure
from study.weights import load_kept

MEASURED_STATUSES = ("ok", "not_fit")


def version_of(value) -> int:
    """A version cell as an int; null (a record from before versions, or a measure it never ran) is 0."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or pd.isna(value):
        return 0
    return int(value)


def newest_parts(measured: dict[tuple[str, int], set[str]], name: str) -> dict[str, int]:
    """trial_id -> the newest version of measure `name` among its parts (study.records.measured_trial_ids)."""
    newest: dict[str, int] = {}
    for (measure, version), ids in measured.items():
        if measure == name:
            for tid in ids:
                newest[tid] = max(newest.get(tid, 0), version)
    return newest


def plan(trials: pd.DataFrame, measured: dict[tuple[str, int], set[str]], kept: Iterable[str],
         names: Iterable[str] | None = None) -> dict[str, list[str]]:
    """trial_id -> the measures to compute from its kept net (see the module doc), in registration order.

    trials: the trials table as written (one row per trial: trial_id, status, version.<name>); measured:
    study.records.measured_trial_ids; kept: ids with a kept net."""
    kept = set(kept)
    eligible = trials[trials["status"].isin(MEASURED_STATUSES) & trials["trial_id"].isin(kept)]
    chosen = list(registry.MEASURES) if names is None else [n for n in registry.MEASURES if n in set(names)]
    todo: dict[str, list[str]] = {}
    for name in chosen:
        current = registry.VERSIONS[name]
        if names is not None:  # asked for by name: once per trial at the current version
            done = measured.get((name, current), set())
            missing = [tid for tid in eligible["trial_id"] if tid not in done]
        else:
            column = registry.version_column(name)
            in_trial = eligible[column] if column in eligible else pd.Series(None, index=eligible.index, dtype=object)
            later = newest_parts(measured, name)
            newest = {tid: max(version_of(v), later.get(tid, 0)) for tid, v in zip(eligible["trial_id"], in_trial)}
            missing = [tid for tid, version in newest.items() if version < current]
        for tid in missing:
            todo.setdefault(tid, []).append(name)
    return todo


def measure_kept(location: str, trial_id: str, names: list[str], device: str | torch.device = "cpu",
                 data_root: str | None = None, download: bool = True) -> dict[str, str | None]:
    """Compute measures `names` of trial `trial_id`'s kept net under `location` and write each one's parts;
    name -> None (written) or the one-line error that kept it from being written. WeightsError if the net
    cannot be loaded."""
    device = torch.device(device) if isinstance(device, str) else device
    model, cfg = load_kept(location, trial_id, device=device)
    data = load_dataset(cfg, data_root=data_root, device=device, download=download)
    ctx = MeasureContext(cfg=cfg, model=model, data=data, device=device)
    outcome: dict[str, str | None] = {}
    for name in names:
        if name not in registry.MEASURES:
            outcome[name] = (f"measure {name!r} is not registered in this process: name its module in "
                             f"{registry.PLUGIN_ENV} on every node")
            continue
        t0 = time.perf_counter()
        try:
            out = registry.MEASURES[name](ctx)
        except Exception as exc:  # noqa: BLE001 -- recorded as missing, the other measures go on
            outcome[name] = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
            continue
        row = {"trial_id": trial_id, "measure": name, "version": registry.VERSIONS[name], **out.record,
               "time.measure_s": time.perf_counter() - t0, "env.device": str(device), "env.torch": torch.__version__,
               "env.threads": torch.get_num_threads(), "created_at": dt.datetime.now(dt.timezone.utc)}
        write_measure(location, name, registry.VERSIONS[name], trial_id, row, out.points, out.trajectories)
        outcome[name] = None
    return outcome
