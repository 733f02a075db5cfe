"""Running planned trials on Ray Tune (joined or started by sweeps.cluster): one bounded Tune experiment per chunk.

A sweep is not one giant Tune experiment: Tune keeps every trial of an experiment in driver memory
and in its experiment state, so the pending trials run as a sequence of experiments of `chunk_size`
trials. Before each chunk the driver lists the records already in the output (the source of truth),
so nothing is run twice after a restart, whichever chunk it died in.

Each Tune trial runs `sweeps.worker.trainable` on an actor with {"cpu": C, "gpu": G}; actors are
reused across the trials of a chunk (reuse_actors=True) and keep their data-set cache. A trial whose
worker dies is retried (FailureConfig(max_failures)); when Tune gives up, the driver writes the error row.

With `pack` = S >= 2 the pending trials of a chunk are grouped by study.packed.group_into_packs (same
architecture and schedule; at most S a pack) and each pack is one Tune trial that trains its nets
together and writes one ordinary record per net. Resume stays per study trial: only trials without a
record are packed, and a retried pack skips the members already recorded. Chunks, the chunk log line,
the "Number of trials" line of the progress table and the summary count study trials, not packs.
"""

from __future__ import annotations

import logging
import os
import re
import resource
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

import psutil

from study.records import completed_trial_ids, unreadable_records
from sweeps.sampling import PlannedTrial
from sweeps.worker import CRASH_ENV, trainable, write_error

METRIC_COLUMNS = {"status": "result", "train_acc": "train acc", "gap": "loss gap", "jacobian": "jacobian"}

# Our records replace Tune's per-trial logs (CSV/JSON/TensorBoard), and Ctrl-C should stop the sweep
# at once (Tune's own handler would finish the experiment and suggest Tuner.restore, which we do not use).
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the classic table, whose columns we choose


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
    verbose: int = 1  # Tune's table (0: silent)
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

def _trial_error(trial) -> str:
    """One line saying why the last attempt of a Tune trial failed (Tune keeps it in the trial's local dir)."""
    import cloudpickle

    try:
        with open(trial.pickled_error_file, "rb") as handle:
            error = cloudpickle.load(handle)
    except Exception:  # no pickled error: fall back to the text log
        error = None
    cause = getattr(error, "cause", None)  # RayTaskError wraps the trainable's own exception
    if isinstance(cause, BaseException):
        error = cause
    if error is not None:
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        return f"{type(error).__name__}: {lines[0] if lines else ''}"[:500]
    try:  # the log appends "Failure # k (occurred at ...)" and the error's text for every attempt
        with open(trial.error_file) as handle:
            last = handle.read().rsplit("Failure #", 1)[-1].splitlines()[1:]
        lines = [line.strip() for line in last if line.strip()]
        return lines[0][:500] if lines else "worker failed"
    except Exception:
        return "worker failed"


def _callbacks(settings: RunSettings, written: list[int]):
    from ray import tune

    class GiveUps(tune.Callback):
        """Tune gave up on a trial (every attempt failed): write its error row from the driver."""

        def on_trial_error(self, iteration, trials, trial, **info):
            try:
                message = f"failed {settings.max_failures + 1} attempts; last: {_trial_error(trial)}"
                item = trial.config["item"]
                for member in item.get("pack", [item]):
                    if write_error(settings.out, member, message):
                        written[0] += 1
            except Exception as exc:  # never take the sweep down; the trial stays pending for a rerun
                print(f"warning: could not write the error row of {trial}: {exc}", file=sys.stderr)

    return [GiveUps()]


def _reporter(settings: RunSettings):
    from ray import tune

    class Reporter(tune.CLIReporter):
        def report(self, trials, done, *sys_info):
            text = self._progress_str(trials, False, *sys_info)  # the final table too: 20 rows, not the whole chunk
            if settings.pack > 1:
                text = _count_study_trials(text, trials)
            self._print(text)

    params = {f"item/cfg/{name}": name for name in settings.parameter_columns}
    columns = {**METRIC_COLUMNS, "trials": "trials"} if settings.pack > 1 else METRIC_COLUMNS
    return Reporter(metric_columns=columns, parameter_columns=params, max_progress_rows=20,
                    max_error_rows=5, max_report_frequency=15, sort_by_metric=False)


def _count_study_trials(text: str, trials) -> str:
    """Tune's "Number of trials: P (...)" line counts packs; say how many study trials they hold."""
    by_state: dict[str, int] = {}
    for trial in trials:
        by_state[trial.status] = by_state.get(trial.status, 0) + trial.config["item"].get("n", 1)
    states = ", ".join(f"{n} {state}" for state, n in sorted(by_state.items()))
    line = f"Number of trials: {sum(by_state.values())} in {len(trials)} packs ({states})"
    return re.sub(r"^Number of trials: .*$", line, text, count=1, flags=re.MULTILINE)


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
           "data_root": settings.data_root, "crash": os.environ.get(CRASH_ENV)}
    written = [0]
    storage = tempfile.mkdtemp(prefix="sensitivity-tune-")
    try:
        tuner = tune.Tuner(
            tune.with_resources(trainable, settings.resources),
            param_space={"item": tune.grid_search(_items(chunk, settings.sweep_id)), "run": run},
            tune_config=tune.TuneConfig(reuse_actors=True, max_concurrent_trials=settings.max_concurrent,
                                        trial_name_creator=lambda t: t.config["item"]["id"],
                                        trial_dirname_creator=lambda t: t.config["item"]["id"]),
            run_config=tune.RunConfig(name=f"sweep-{settings.sweep_id}-chunk{index}", storage_path=storage,
                                      verbose=settings.verbose, progress_reporter=_reporter(settings),
                                      failure_config=tune.FailureConfig(max_failures=settings.max_failures),
                                      callbacks=_callbacks(settings, written)))
        logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)  # no result.json: ours
        tuner.fit()
        del tuner
    finally:
        shutil.rmtree(storage, ignore_errors=True)
    return written[0]


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
