"""`sensitivity measure` on Ray Tune: the measures study.remeasure.plan finds missing, computed from the kept
nets by Tune trials, with no training.

Measuring a kept net takes a fraction of a second to a few seconds, less than Tune's cost of a trial and an
actor, so each Tune trial measures a batch of study trials (about four batches per slot, at most
BATCH_MAX trials each, balanced by their cost so that the batches end together) on an actor reused across
the batches of a chunk, with the data-set cache of the process. Each study trial's values are written by
the worker as they are computed (study.records, atomic; the trials part last). Before each chunk the
driver lists what is written, so a rerun after a kill (or a batch whose worker died, retried by Tune up to
max_failures times) computes only what is missing, and every value exists once (the worker checks each
value's own file before computing it). A measure that raises writes nothing and is reported; the next run
tries again.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

from study.config import TrialConfig
from study.datasets import N_CLASSES
from study.models import count_parameters
from study.records import measure_written, measured_trial_ids
from study.resources import estimate_bytes, n_features
from sweeps.failures import error_line
from sweeps.memory import reservation
from sweeps.progress import periodic_callback
from sweeps.runner import RunSettings, fit_experiment, temp_storage

BATCH_MAX = 32
BATCHES_PER_SLOT = 4


@dataclass
class MeasureReport:
    planned: int = 0  # (trial, measure) values asked for
    already: int = 0  # of those, written before this run (an interrupted run's)
    written: int = 0  # of those, written by this run
    errors: list[str] = field(default_factory=list)  # one line per value a measure could not compute
    failed: list[str] = field(default_factory=list)  # batches whose every attempt died (their values pending)
    missing: int = 0  # values still without a part at the end
    seconds: float = 0.0


def _missing(todo: dict[str, list[str]], versions: dict[str, int], out: str) -> dict[str, list[str]]:
    """The part of `todo` whose values are not written yet at `out`."""
    done = measured_trial_ids(out)
    left = {tid: [n for n in names if tid not in done.get((n, versions[n]), set())] for tid, names in todo.items()}
    return {tid: names for tid, names in left.items() if names}


def measure_cost(cfg: TrialConfig) -> float:
    """A trial's measuring cost, up to a constant: its parameters times its points (forwards and backwards)."""
    return float(count_parameters(n_features(cfg), cfg.width, cfg.depth, N_CLASSES[cfg.dataset])
                 * (cfg.n_train + cfg.n_test))


def batches(todo: dict[str, list[str]], configs: dict[str, TrialConfig], versions: dict[str, int],
            slots: int) -> list[dict[str, Any]]:
    """Tune items {id, jobs: [{trial_id, measures, versions}], n, memory}: about BATCHES_PER_SLOT per slot of
    at most BATCH_MAX trials, balanced by measure_cost (each trial, costliest first, to the batch with the
    least so far, so the batches end together), each reserving its largest net's memory estimate."""
    order = sorted(todo, key=lambda tid: (-measure_cost(configs[tid]), tid))
    count = max(math.ceil(len(order) / BATCH_MAX), min(len(order), BATCHES_PER_SLOT * max(1, slots)))
    members: list[list[str]] = [[] for _ in range(count)]
    load = [0.0] * count
    for tid in order:
        i = min((b for b in range(count) if len(members[b]) < BATCH_MAX), key=lambda b: (load[b], b))
        members[i].append(tid)
        load[i] += measure_cost(configs[tid])
    items = []
    for ids in members:
        jobs = [{"trial_id": tid, "measures": todo[tid], "versions": {n: versions[n] for n in todo[tid]}}
                for tid in ids]
        items.append({"id": f"measure-{ids[0]}-{len(ids)}", "jobs": jobs, "n": len(ids),
                      "memory": reservation(max(estimate_bytes(configs[tid]) for tid in ids))})
    return items


def measure_trainable(config: dict[str, Any]) -> None:
    """The Tune function trainable of one batch: for each of its trials, the measures not written yet."""
    import torch
    from ray import tune

    from study import measures as registry
    from study.remeasure import measure_kept
    from study.resources import release_memory
    from study.weights import WeightsError

    item, run = config["item"], config["run"]
    torch.set_num_threads(run["threads"])
    errors = []
    for job in item["jobs"]:
        tid = job["trial_id"]
        left = [n for n in job["measures"] if not measure_written(run["out"], n, job["versions"][n], tid)]
        stale = [n for n in left if registry.VERSIONS.get(n) != job["versions"][n]]
        errors += [f"{job['trial_id']} {n}: this worker has version {registry.VERSIONS.get(n)} of the measure, the "
                   f"driver {job['versions'][n]}: run the same code on every node" for n in stale]
        left = [n for n in left if n not in stale]
        if not left:
            continue
        try:
            outcome = measure_kept(run["out"], job["trial_id"], left, device=run["device"], data_root=run["data_root"])
        except WeightsError as exc:
            errors.append(f"{job['trial_id']}: {exc}")
            continue
        errors += [f"{job['trial_id']} {name}: {error}" for name, error in outcome.items() if error is not None]
    release_memory()
    tune.report({"n_errors": len(errors), "errors": "\n".join(errors[:20])})  # what was written: the files


def progress_line(trials: list, total: int) -> str:
    """'measure: D of N trials done, R running[, F failed]', counting study trials (a batch holds several)."""
    def count(state: str) -> int:
        return sum(int(t.config["item"]["n"]) for t in trials if t.status == state)
    failed = count("ERROR")
    return f"measure: {count('TERMINATED')} of {total} trials done, {count('RUNNING')} running" + \
        (f", {failed} failed" if failed else "")


def _progress(total: int, write):
    """`progress_line` every sweeps.progress.EVERY_S seconds and at the end of the chunk (periodic_callback)."""
    return periodic_callback(lambda trials: progress_line(trials, total), write)


def _run_chunk(items: list[dict[str, Any]], settings: RunSettings, index: int, total: int,
               report: MeasureReport, log) -> None:
    run = {"out": settings.out, "device": settings.device, "threads": settings.threads, "data_root": settings.data_root}
    with temp_storage("sensitivity-measure-") as storage:
        try:
            # one memory reservation for the chunk where that costs no concurrency (trial_resources): Tune reuses
            # an actor (its imports, its data-set cache) only for trials of one resource shape
            results = fit_experiment(measure_trainable, items, settings, run, f"measure-chunk{index}",
                                     [_progress(total, log)] if settings.verbose else [], storage)
        except Exception as exc:  # Tune's controller gave up: what was written stays, the rest is missing
            report.failed.append(f"Tune stopped chunk {index + 1}: {error_line(exc)}")
            return
        for result in results:
            if result.error is not None:
                item = (result.config or {}).get("item") or {}
                report.failed.append(f"{item.get('id', result.path)}: {error_line(result.error)}")
                continue
            metrics = result.metrics or {}
            report.errors += [line for line in str(metrics.get("errors") or "").splitlines() if line]


def execute_measures(todo: dict[str, list[str]], configs: dict[str, TrialConfig], versions: dict[str, int],
                     settings: RunSettings, slots: int, log=print) -> MeasureReport:
    """Compute every planned value not yet written at settings.out, chunk by chunk (settings.chunk_size trials)."""
    start = time.perf_counter()
    report = MeasureReport(planned=sum(map(len, todo.values())))
    pending = _missing(todo, versions, settings.out)
    report.already = report.planned - sum(map(len, pending.values()))
    ids = list(pending)
    chunks = [ids[lo:lo + settings.chunk_size] for lo in range(0, len(ids), settings.chunk_size)]
    for index, chunk in enumerate(chunks):
        if index:  # another launch may be measuring the same location: recheck
            pending = _missing(todo, versions, settings.out)
        part = {tid: pending[tid] for tid in chunk if tid in pending}
        if not part:
            continue
        t0 = time.perf_counter()
        items = batches(part, configs, versions, slots)
        _run_chunk(items, settings, index, len(part), report, log)
        log(f"chunk {index + 1}/{len(chunks)}: {len(part)} trials in {len(items)} batches, "
            f"{time.perf_counter() - t0:.1f} s")
    report.missing = sum(map(len, _missing(todo, versions, settings.out).values()))
    report.written = report.planned - report.already - report.missing
    report.seconds = time.perf_counter() - start
    return report
