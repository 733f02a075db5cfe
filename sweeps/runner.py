"""Running planned trials on Ray Tune (joined or started by sweeps.cluster): one bounded Tune experiment per chunk.

A sweep is not one giant Tune experiment: Tune keeps every trial of an experiment in driver memory
and in its experiment state, so the pending trials run as a sequence of experiments of `chunk_size`
trials. Before each chunk the driver lists the records already in the output (the source of truth),
so nothing is run twice after a restart, whichever chunk it died in.

Each Tune trial runs `sweeps.worker.trainable` on an actor with {"CPU": C, "GPU": G, "memory": its
estimate (sweeps.memory)}; one stopped for outgrowing it runs again once with what it needed. Actors are
reused across the trials of a chunk (reuse_actors=True) and keep their data-set cache. A trial whose
worker dies is retried (FailureConfig(max_failures)); when Tune gives up, the driver writes the error row
from the chunk's ResultGrid. Tune runs silent; sweeps.progress draws the progress table from a callback.

With `pack` = S >= 2 the pending trials of a chunk are grouped by study.packed.group_into_packs (same
architecture and schedule; at most S a pack) and each pack is one Tune trial that trains its nets
together and writes one ordinary record per net. Resume stays per study trial: only trials without a
record are packed, and a retried pack skips the members already recorded. Chunks, the chunk log line,
the "Number of trials" line of the progress table and the summary count study trials, not packs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import resource
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Iterator

import psutil

from study.records import completed_trial_ids, unreadable_records
from sweeps.failures import item_of, largest_node_memory, node_resources, plan_retries, write_error_rows
from sweeps.memory import OOM_STATUS, uniform_reservation
from sweeps.progress import progress_callback
from sweeps.sampling import PlannedTrial
from sweeps.units import (bundle_items, chunks as make_chunks, cost_bundles, cost_groups, items, unfinished_members,
                          speed_factor, unit_id, unit_seconds, units)
from sweeps.worker import trainable

# Tune's documented environment switches, set while a chunk runs (a value the user set is kept): our
# records replace Tune's per-trial logs (CSV/JSON/TensorBoard); Ctrl-C stops the sweep at once (Tune's own
# handler would finish the experiment and suggest Tuner.restore, which we do not use); and Tune's legacy
# output engine, which at verbose=0 prints nothing (the new one still prints a box per experiment, here
# one per chunk), while sweeps.progress prints the table.
TUNE_ENV = {"TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1", "TUNE_DISABLE_SIGINT_HANDLER": "1", "RAY_AIR_NEW_OUTPUT": "0"}


@dataclass
class RunSettings:
    out: str  # absolute path or URI
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    max_concurrent: int | None = None
    max_failures: int = 2
    chunk_size: int = 500
    data_root: str | None = None
    sweep_id: str = ""
    parameter_columns: tuple[str, ...] = ()
    verbose: int = 1  # the progress table (0: none)
    pack: int = 1  # >= 2: train up to this many compatible configs as one Tune trial (study.packed)
    bundle: int = 1  # units (trials or packs) one Tune trial runs one after the other: K >= 2; 1 one; 0 automatic
    keep_models: bool = True  # each trial writes models/<trial_id>.safetensors (study.weights)
    skip_measures: tuple[str, ...] = ()  # measures the trials leave out (sensitivity measure adds them later)

    @property
    def device(self) -> str:
        return "cuda" if self.gpus_per_trial > 0 else "cpu"

    @property
    def resources(self) -> dict[str, float]:
        """What a trial reserves on its node (fractional GPUs allowed: 0.25 puts four trials on a GPU)."""
        return {"cpu": float(self.cpus_per_trial), "gpu": float(self.gpus_per_trial)}

    @property
    def threads(self) -> int:
        return max(1, int(self.cpus_per_trial))


@dataclass
class ChunkStats:
    trials: int  # study trials (a pack counts its members)
    seconds: float
    rss_mib: float  # driver resident memory after the chunk
    peak_rss_mib: float  # driver peak resident memory so far
    errors_written: int


@dataclass
class RunReport:
    chunks: list[ChunkStats] = field(default_factory=list)
    skipped: int = 0  # trials already recorded before this launch
    missing: int = 0  # trials still without a record at the end


# -- Tune -------------------------------------------------------------------------------------

@contextlib.contextmanager
def tune_environment() -> Iterator[None]:
    previous = {k: os.environ.get(k) for k in TUNE_ENV}
    os.environ.update({k: v for k, v in TUNE_ENV.items() if previous[k] is None})
    try:
        yield
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)


@dataclass
class ChunkOutcome:
    errors_written: int = 0  # error rows the driver wrote
    # (item, peak bytes, Ray's words if Ray killed it): stopped by the guard, or killed by Ray for memory
    out_of_memory: list[tuple[dict[str, Any], int, str | None]] = field(default_factory=list)
    failed: str | None = None  # Tune itself stopped the chunk (this text), its unrecorded trials not run
    failed_bundles: list[dict[str, Any]] = field(default_factory=list)  # bundles Tune gave up on: no rows yet


def trial_resources(settings: RunSettings, chunk_items: list[dict[str, Any]]):
    """Per Tune trial: the settings' CPUs and GPUs, and the memory its item reserves (sweeps.memory), or the
    chunk's largest where that costs no concurrency (uniform_reservation); at most the largest node's (the
    sweep refused configs whose estimate exceeds it; the ladder may round above)."""
    from ray import tune

    cpu, gpu, nodes = settings.resources["cpu"], settings.resources["gpu"], node_resources()
    cap = largest_node_memory(nodes) or float("inf")
    uniform = uniform_reservation([int(i["memory"]) for i in chunk_items], nodes, cpu, gpu)
    return lambda config: tune.PlacementGroupFactory(
        [{"CPU": cpu, "GPU": gpu, "memory": min(float(uniform or config["item"]["memory"]), cap)}])


def fit_experiment(trainable_fn, chunk_items: list[dict[str, Any]], settings: RunSettings, run: dict[str, Any],
                   name: str, callbacks: list, storage: str):
    """Fit one Tune experiment: a grid over `chunk_items` (each its own Tune trial, named by its id), run
    settings `run`, every trial reserving trial_resources(settings, chunk_items), actors reused, storage in
    `storage` (a temp_storage). Returns Tune's ResultGrid; raises what Tune raises when its controller gives up.
    The one place the sweep (run_chunk) and `sensitivity measure` (sweeps.remeasure) build an experiment."""
    from ray import tune

    with tune_environment():
        tuner = tune.Tuner(
            tune.with_resources(trainable_fn, trial_resources(settings, chunk_items)),
            param_space={"item": tune.grid_search(chunk_items), "run": run},
            tune_config=tune.TuneConfig(reuse_actors=True, max_concurrent_trials=settings.max_concurrent,
                                        trial_name_creator=lambda t: t.config["item"]["id"],
                                        trial_dirname_creator=lambda t: t.config["item"]["id"]),
            run_config=tune.RunConfig(name=name, storage_path=storage, verbose=0, callbacks=callbacks,
                                      failure_config=tune.FailureConfig(max_failures=settings.max_failures)))
        return tuner.fit()


@contextlib.contextmanager
def temp_storage(prefix: str) -> Iterator[str]:
    """A temporary directory for Tune's experiment state (our records are the results), removed afterwards."""
    storage = tempfile.mkdtemp(prefix=prefix)
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)  # no result.json: ours
    try:
        yield storage
    finally:
        shutil.rmtree(storage, ignore_errors=True)


def run_chunk(chunk: list[list[PlannedTrial]], settings: RunSettings, index: int,
              memory: dict[str, int] | None = None, log=print, bundle: int | None = None,
              slots: int = 1, speed: float = 1.0) -> ChunkOutcome:
    """One bounded Tune experiment over `chunk` (units: a trial or a pack), each unit reserving its
    estimated memory or `memory[unit id]`, bundled by `bundle` (default settings.bundle: K units a Tune
    trial, or 0: by estimated seconds times `speed`, sweeps.units.cost_bundles, for `slots` trials at once)."""
    run = {"out": settings.out, "device": settings.device, "threads": settings.threads,
           "data_root": settings.data_root, "keep_models": settings.keep_models,
           "skip_measures": list(settings.skip_measures)}
    k = settings.bundle if bundle is None else bundle
    outcome = ChunkOutcome()
    # Largest first: trials of one reservation in a row (Tune reuses an actor only for the same resource
    # shape), and the longest trials (memory grows with the net and with L-BFGS) do not run last and alone.
    ordered = sorted(items(chunk, settings.sweep_id, memory), key=lambda item: -item["memory"])
    for item in ordered:
        item["seconds"] *= speed
    chunk_items = cost_bundles(ordered, slots) if k == 0 else bundle_items(ordered, k)
    grouped = any("pack" in item or "bundle" in item for item in chunk_items)
    callbacks = [progress_callback(settings.parameter_columns, grouped)] if settings.verbose else []
    by_id = {item["id"]: item for item in chunk_items}
    with temp_storage("sensitivity-tune-") as storage:
        try:
            results = fit_experiment(trainable, chunk_items, settings, run, f"sweep-{settings.sweep_id}-chunk{index}",
                                     callbacks, storage)
        except Exception as exc:  # Tune's controller gave up (e.g. a worker killed while starting): not the sweep
            outcome.failed = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
            log(f"warning: Tune stopped chunk {index + 1}: {outcome.failed[:300]}")
            return outcome
        killed: list[tuple[dict[str, Any], str]] = []
        outcome.errors_written = write_error_rows(results, settings.max_failures + 1, settings.out, by_id, killed,
                                                  outcome.failed_bundles)
        outcome.out_of_memory = [(item_of(r, by_id), int(r.metrics.get("oom_bytes", 0)), None) for r in results
                                 if r.error is None and (r.metrics or {}).get("status") == OOM_STATUS]
        outcome.out_of_memory += [(item, 2 * int(item["memory"]), words) for item, words in killed]  # unseen: 2x
        del results
    return outcome


def _run_with_retries(chunk: list[list[PlannedTrial]], settings: RunSettings, index: int, log,
                      slots: int = 1, speed: float = 1.0) -> tuple[int, int]:
    """run_chunk, then once more for the units stopped for memory (with what they were seen to need), for
    the unfinished units of a bundle Tune gave up on (each alone: one hopeless trial must not cost its
    bundle's others an error row) and, if Tune itself stopped the chunk, for its unrecorded units. Returns
    (error rows, retried for memory)."""
    outcome = run_chunk(chunk, settings, index, log=log, slots=slots, speed=speed)
    errors, retried = outcome.errors_written, 0
    if outcome.failed:
        done = completed_trial_ids(settings.out)
        chunk = [kept for kept in ([t for t in unit if t.trial_id not in done] for unit in chunk) if kept]
        if chunk:
            outcome = run_chunk(chunk, settings, index, log=log, slots=slots, speed=speed)
            errors += outcome.errors_written
    alone = _unfinished_members(outcome.failed_bundles, chunk, settings.out)
    again, memory, written = plan_retries(outcome.out_of_memory, chunk, set(), settings.out)
    errors += written
    if alone:  # a bundle whose worker died every attempt: its unfinished units once more, each its own Tune trial
        errors += run_chunk(alone, settings, index, log=log, bundle=1).errors_written
    if again:
        retried = len(again)
        outcome = run_chunk(again, settings, index, memory=memory, log=log, bundle=1)  # each its own reservation
        _, _, written = plan_retries(outcome.out_of_memory, again, {unit_id(u) for u in again}, settings.out)
        errors += outcome.errors_written + written
    return errors, retried


def _unfinished_members(bundles: list[dict[str, Any]], chunk: list[list[PlannedTrial]],
                        out: str) -> list[list[PlannedTrial]]:
    """The units of `bundles` (items) with a trial still unrecorded, as units of `chunk`."""
    if not bundles:
        return []
    by_id = {unit_id(unit): unit for unit in chunk}
    done = completed_trial_ids(out)
    return [by_id[member["id"]] for item in bundles for member in unfinished_members(item, done)
            if member["id"] in by_id]


def _rss_mib() -> tuple[float, float]:
    rss = psutil.Process().memory_info().rss / 2 ** 20
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return rss, peak


def trials_per_chunk(work: list[list[PlannedTrial]], settings: RunSettings, slots: int) -> int:
    """Study trials a chunk holds: --chunk-size Tune trials (the driver's memory grows with them), times the
    trials a Tune trial runs (K with --bundle K; automatic bundles: the pending units' mean, cost_groups)."""
    if settings.bundle != 0:
        return settings.chunk_size * max(1, settings.bundle)
    n_trials = sum(len(unit) for unit in work)
    tune_trials = len(cost_groups([unit_seconds(unit) for unit in work], slots)) if work else 1
    return max(settings.chunk_size, round(settings.chunk_size * n_trials / tune_trials))


def execute(trials: list[PlannedTrial], settings: RunSettings, log=print, slots: int = 1) -> RunReport:
    """Run every planned trial that has no record at `settings.out`, chunk by chunk, `slots` at once (what
    automatic bundles are sized for)."""
    import gc

    report = RunReport()
    wanted = {t.trial_id for t in trials}
    done = completed_trial_ids(settings.out) & wanted
    broken = unreadable_records(settings.out, done)
    if broken:  # e.g. truncated by an interrupted copy: not a record, run again (replaced atomically)
        log(f"{len(broken)} unreadable trial records, run again: {', '.join(broken[:5])}"
            + (" ..." if len(broken) > 5 else ""))
        done -= set(broken)
    report.skipped = len(done)
    pending = [t for t in trials if t.trial_id not in done]
    work = units(pending, settings.pack)
    chunks = make_chunks(work, trials_per_chunk(work, settings, slots))
    n_chunks = len(chunks)
    for index, chunk in enumerate(chunks):
        if index:  # another launch may be working on the same output: recheck
            done = completed_trial_ids(settings.out) & wanted
        chunk = [kept for kept in ([t for t in unit if t.trial_id not in done] for unit in chunk) if kept]
        if not chunk:
            continue
        start = time.perf_counter()
        speed, measured = speed_factor(settings.out, trials, done) if settings.bundle == 0 else (1.0, 0)
        if measured:
            log(f"chunk {index + 1}/{n_chunks}: trials take {speed:.3g} x their estimated seconds (median of "
                f"{measured} recorded); automatic bundles are sized with that")
        errors, stopped = _run_with_retries(chunk, settings, index, log, slots, speed)
        gc.collect()
        rss, peak = _rss_mib()
        stats = ChunkStats(sum(len(unit) for unit in chunk), time.perf_counter() - start, rss, peak, errors)
        report.chunks.append(stats)
        packs = sum(len(unit) > 1 for unit in chunk)
        log(f"chunk {index + 1}/{n_chunks}: {stats.trials} trials" + (f" ({packs} packs)" if packs else "")
            + f" in {stats.seconds:.1f} s"
            + (f", {stopped} stopped for memory and retried" if stopped else "")
            + (f", {errors} given up (error rows)" if errors else "")
            + f"; driver RSS {rss:.0f} MiB (peak {peak:.0f} MiB)")
    report.missing = len(wanted - completed_trial_ids(settings.out))
    return report
