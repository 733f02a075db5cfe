"""Running planned trials on Ray Tune (joined or started by sweeps.cluster): one bounded Tune experiment per chunk.

A sweep is not one giant Tune experiment: Tune keeps every trial of an experiment in driver memory
and in its experiment state, so the pending trials run as a sequence of experiments of `chunk_size`
trials. Before each chunk the driver lists the records already in the output (the source of truth),
so nothing is run twice after a restart, whichever chunk it died in.

Each Tune trial runs `sweeps.worker.trainable` on an actor with {"cpu": C, "gpu": G}; actors are
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
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Iterator

import psutil

from study.records import completed_trial_ids, unreadable_records
from sweeps.progress import progress_callback
from sweeps.sampling import PlannedTrial
from sweeps.worker import trainable, write_error

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

def _error_line(error: BaseException | None) -> str:
    """One line saying why the last attempt of a Tune trial failed (the trainable's own exception, when a
    RayTaskError wraps it)."""
    cause = getattr(error, "cause", None)
    if isinstance(cause, BaseException):
        error = cause
    if error is None:
        return "worker failed"
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[0] if lines else ''}"[:500]


def _write_error_rows(results, settings: RunSettings) -> int:
    """Error rows for the Tune trials that Tune gave up on (every attempt failed); returns how many were
    written. A row that cannot be written is reported and its trial stays pending for a rerun."""
    written = 0
    for result in results:
        if result.error is None:
            continue
        message = f"failed {settings.max_failures + 1} attempts; last: {_error_line(result.error)}"
        item = (result.config or {}).get("item") or {}
        for member in item.get("pack", [item] if item else []):
            try:
                written += write_error(settings.out, member, message)
            except Exception as exc:  # never take the sweep down
                print(f"warning: could not write the error row of {member.get('id')}: {exc}", file=sys.stderr)
    return written


@contextlib.contextmanager
def _tune_environment() -> Iterator[None]:
    previous = {k: os.environ.get(k) for k in TUNE_ENV}
    os.environ.update({k: v for k, v in TUNE_ENV.items() if previous[k] is None})
    try:
        yield
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)


def _item(t: PlannedTrial, sweep: str) -> dict[str, Any]:
    return {"id": t.trial_id, "cfg": t.config.canonical(), "pair_id": t.pair_id, "pair_factor": t.pair_factor,
            "sweep_id": sweep}


def _items(chunk: list[list[PlannedTrial]], sweep: str) -> list[dict[str, Any]]:
    """One Tune trial per unit: a study trial, or a pack {id, pack: [its trials], n, cfg: each field's values
    joined by '/', for the progress table}."""
    items = []
    for unit in chunk:
        if len(unit) == 1:
            items.append(_item(unit[0], sweep))
            continue
        configs = [t.config.canonical() for t in unit]
        shown = {k: "/".join(map(str, dict.fromkeys(c[k] for c in configs))) for k in configs[0]}  # the table's cells
        items.append({"id": f"pack{len(unit)}-{unit[0].trial_id}", "pack": [_item(t, sweep) for t in unit],
                      "n": len(unit), "cfg": shown})
    return items


def units(pending: list[PlannedTrial], pack: int) -> list[list[PlannedTrial]]:
    """What each Tune trial runs: one planned trial, or (pack >= 2) a pack of compatible ones."""
    if pack < 2:
        return [[t] for t in pending]
    from study.packed import group_into_packs

    by_id = {t.trial_id: t for t in pending}
    return [[by_id[c.trial_id] for c in group] for group in group_into_packs([t.config for t in pending], pack)]


def _chunks(work: list[list[PlannedTrial]], size: int) -> list[list[list[PlannedTrial]]]:
    """Consecutive units, at most `size` study trials a chunk (a bigger pack gets a chunk of its own)."""
    chunks: list[list[list[PlannedTrial]]] = []
    count = size
    for unit in work:
        if count + len(unit) > size:
            chunks.append([])
            count = 0
        chunks[-1].append(unit)
        count += len(unit)
    return chunks


def run_chunk(chunk: list[list[PlannedTrial]], settings: RunSettings, index: int) -> int:
    """One bounded Tune experiment over `chunk` (units: a trial or a pack); returns the number of error
    rows the driver wrote."""
    from ray import tune

    run = {"out": settings.out, "device": settings.device, "threads": settings.threads,
           "data_root": settings.data_root}
    callbacks = [progress_callback(settings.parameter_columns, settings.pack > 1)] if settings.verbose else []
    storage = tempfile.mkdtemp(prefix="sensitivity-tune-")
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)  # no result.json: ours
    try:
        with _tune_environment():
            tuner = tune.Tuner(
                tune.with_resources(trainable, settings.resources),
                param_space={"item": tune.grid_search(_items(chunk, settings.sweep_id)), "run": run},
                tune_config=tune.TuneConfig(reuse_actors=True, max_concurrent_trials=settings.max_concurrent,
                                            trial_name_creator=lambda t: t.config["item"]["id"],
                                            trial_dirname_creator=lambda t: t.config["item"]["id"]),
                run_config=tune.RunConfig(name=f"sweep-{settings.sweep_id}-chunk{index}", storage_path=storage,
                                          verbose=0, callbacks=callbacks,
                                          failure_config=tune.FailureConfig(max_failures=settings.max_failures)))
            results = tuner.fit()
        written = _write_error_rows(results, settings)
        del tuner, results
    finally:
        shutil.rmtree(storage, ignore_errors=True)
    return written


def _rss_mib() -> tuple[float, float]:
    rss = psutil.Process().memory_info().rss / 2 ** 20
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return rss, peak


def execute(trials: list[PlannedTrial], settings: RunSettings, log=print) -> RunReport:
    """Run every planned trial that has no record at `settings.out`, chunk by chunk."""
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
    chunks = _chunks(units(pending, settings.pack), settings.chunk_size)
    n_chunks = len(chunks)
    for index, chunk in enumerate(chunks):
        if index:  # another launch may be working on the same output: recheck
            done = completed_trial_ids(settings.out) & wanted
        chunk = [kept for kept in ([t for t in unit if t.trial_id not in done] for unit in chunk) if kept]
        if not chunk:
            continue
        start = time.perf_counter()
        errors = run_chunk(chunk, settings, index)
        gc.collect()
        rss, peak = _rss_mib()
        stats = ChunkStats(sum(len(unit) for unit in chunk), time.perf_counter() - start, rss, peak, errors)
        report.chunks.append(stats)
        packs = sum(len(unit) > 1 for unit in chunk)
        log(f"chunk {index + 1}/{n_chunks}: {stats.trials} trials" + (f" ({packs} packs)" if packs else "")
            + f" in {stats.seconds:.1f} s"
            + (f", {errors} given up (error rows)" if errors else "")
            + f"; driver RSS {rss:.0f} MiB (peak {peak:.0f} MiB)")
    report.missing = len(wanted - completed_trial_ids(settings.out))
    return report
