"""One trial, end to end: `run_trial(TrialConfig) -> TrialResult`. Pure: same config, same numbers.

Data -> model -> training -> every registered measure -> three tables (trial row, points, trajectories).
A config error (bad value, missing data, too big for the device) raises ConfigError before training;
anything that goes wrong later becomes a record with status "error" and the message.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from typing import Callable, Iterable

import pandas as pd
import torch

from study import measures as measure_registry
from study.config import ConfigError, TrialConfig
from study.data import Dataset, load_dataset
from study.measures import MeasureContext
from study.models import build_model, count_parameters
from study.schema import SCHEMA_VERSION, hp_record
from study.records import write_trial
from study.regularizers import make_penalty
from study.resources import check_memory, resolve_device
from study.train import TrainOutcome, train
from study.weights import encode, model_sha256


@dataclass
class TrialResult:
    config: TrialConfig
    record: dict  # the trial row (trials table)
    points: pd.DataFrame
    trajectories: pd.DataFrame
    model: torch.nn.Module | None  # trained, eval mode (None if the trial failed before training)

    @property
    def trial_id(self) -> str:
        return self.config.trial_id

    @property
    def status(self) -> str:
        return self.record["status"]

    def weights(self) -> bytes | None:
        """The trained net's weights file (study.weights), None without a net."""
        if self.model is None:
            return None
        return encode(self.model, self.config, self.record["data.n_features"], self.record["data.n_classes"],
                      self.record["model.init_sha256"])

    def write(self, location: str, keep_model: bool = True) -> None:
        """Write the three tables and (keep_model) the net's weights atomically under `location` (a directory or
        an s3:// URI); the trials row last."""
        write_trial(location, self.trial_id, self.record, self.points, self.trajectories,
                    self.weights() if keep_model else None)


def base_record(cfg: TrialConfig, device: torch.device | None = None, pack_size: int = 1) -> dict:
    """What every record starts with: ids, status "error" until set, the hp.* columns and what the trial ran
    on (device, torch version, torch threads, how many nets were trained together: float32 rounding depends
    on all of these, and long chaotic trainings can amplify it). Without a device (a row the driver writes
    for a trial whose worker died) the env.* columns are left out: the driver's are not the trial's."""
    record = {"trial_id": cfg.trial_id, "schema_version": SCHEMA_VERSION, "status": "error", "error": None}
    if device is not None:
        record.update({"env.device": str(device), "env.torch": torch.__version__,
                       "env.threads": torch.get_num_threads(), "env.pack_size": pack_size})
    record.update(hp_record(cfg))
    return record


def describe_model(record: dict, model: torch.nn.Module) -> None:
    """The columns of a freshly built net: its neurons and the hash of its initial weights (model.init_sha256,
    which load_model(initial=True) checks when it regenerates them)."""
    record["model.n_neurons"] = model.n_neurons()
    record["model.init_sha256"] = model_sha256(model)


def run_measures(ctx: MeasureContext, skip: Iterable[str] = ()) -> tuple[dict, pd.DataFrame, pd.DataFrame]:
    """Run the registered measures but those in `skip`; merge their records (with the version of each:
    version.<name>), point columns and trajectory rows. A skipped measure leaves its columns and its version
    empty: `sensitivity measure` computes it later from the kept net (study.remeasure)."""
    record: dict = {}
    points: pd.DataFrame | None = None
    trajectories = []
    skip = set(skip)
    for name, fn in measure_registry.MEASURES.items():
        if name in skip:
            continue
        out = fn(ctx)
        record.update(out.record)
        record[measure_registry.version_column(name)] = measure_registry.VERSIONS[name]
        if out.points is not None:
            points = out.points if points is None else points.merge(out.points, on=["split", "index"], how="outer")
        if out.trajectories is not None and len(out.trajectories):
            trajectories.append(out.trajectories)
    points = points if points is not None else pd.DataFrame(columns=["split", "index"])
    trajectories_frame = pd.concat(trajectories, ignore_index=True) if trajectories else pd.DataFrame(columns=["kind"])
    return record, points, trajectories_frame


def _failed(record: dict, exc: Exception) -> None:
    record["status"] = "error"
    record["error"] = f"{type(exc).__name__}: {exc}"


def close_record(cfg: TrialConfig, record: dict, total_s: float | None = None, points: pd.DataFrame | None = None,
                 trajectories: pd.DataFrame | None = None, model: torch.nn.Module | None = None) -> TrialResult:
    """The one place a record is closed, for every path (alone, packed, the driver's row for a trial whose
    worker died): total time, creation time, the trial id on every point and trajectory row."""
    points = pd.DataFrame(columns=["split", "index"]) if points is None else points
    trajectories = pd.DataFrame(columns=["kind"]) if trajectories is None else trajectories
    if total_s is not None:
        record["time.total_s"] = total_s
    record["created_at"] = dt.datetime.now(dt.timezone.utc)
    points = points.assign(trial_id=cfg.trial_id) if len(points) else points
    trajectories = trajectories.assign(trial_id=cfg.trial_id) if len(trajectories) else trajectories
    return TrialResult(cfg, record, points, trajectories, model)


def finish_trial(cfg: TrialConfig, record: dict, model: torch.nn.Module, data: Dataset, device: torch.device,
                 outcome: TrainOutcome, spent_s: float, skip_measures: Iterable[str] = ()) -> TrialResult:
    """A trained net's status, measures (none for a diverged net; none of `skip_measures`) and closed record,
    alone or packed; `spent_s` is the time the trial took before its measures."""
    points = trajectories = None
    t1 = time.perf_counter()
    try:
        record.update({"status": outcome.status, "error": outcome.message or None, "train.steps": outcome.steps,
                       "time.train_s": outcome.seconds})
        if outcome.status != "diverged":  # a diverged net has no meaningful measures: left empty
            ctx = MeasureContext(cfg=cfg, model=model, data=data, device=device)
            measured, points, trajectories = run_measures(ctx, skip_measures)
            record.update(measured)
            record["time.measure_s"] = time.perf_counter() - t1
    except ConfigError:
        raise
    except Exception as exc:  # recorded, never a crash: the sweep goes on
        _failed(record, exc)
    return close_record(cfg, record, spent_s + time.perf_counter() - t1, points, trajectories, model)


def run_trial(cfg: TrialConfig, device: str | torch.device = "cpu", data_root: str | None = None,
              threads: int | None = None, progress: Callable[[int, float, float], None] | None = None,
              download: bool = True, skip_measures: Iterable[str] = ()) -> TrialResult:
    """Train one network under `cfg` and measure it (every registered measure but `skip_measures`: how a
    trial runs, not what it is; its id and every other number are the same). Raises ConfigError for bad
    settings before training."""
    t0 = time.perf_counter()
    device = resolve_device(device) if isinstance(device, str) else device
    if threads is not None:
        torch.set_num_threads(max(1, int(threads)))
    check_memory(cfg, device)
    penalty = make_penalty(cfg)  # validates the regularizer before any work
    data = load_dataset(cfg, data_root=data_root, device=device, download=download)
    record = base_record(cfg, device)
    record.update({"data.n_features": data.n_features, "data.n_classes": data.n_classes,
                   "model.n_params": count_parameters(data.n_features, cfg.width, cfg.depth, data.n_classes),
                   "time.data_s": time.perf_counter() - t0})
    model = None
    try:
        model = build_model(cfg, data.n_features, data.n_classes, device)
        describe_model(record, model)
        outcome = train(model, data, cfg, penalty=penalty, progress=progress)
    except ConfigError:
        raise
    except Exception as exc:  # recorded, never a crash: the sweep goes on
        _failed(record, exc)
        return close_record(cfg, record, time.perf_counter() - t0, model=model)
    return finish_trial(cfg, record, model, data, device, outcome, time.perf_counter() - t0, skip_measures)
