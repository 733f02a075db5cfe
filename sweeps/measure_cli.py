"""`sensitivity measure DIR [--measures NAMES] [--where EXPR]`: compute measures of a finished sweep from its
kept nets.

By default every registered measure whose values are missing (a measure registered later, or one the sweep
skipped with --skip-measures), or computed by an older version of it, for every trial of DIR that fit or ran
out of steps and kept its net; with --measures, those measures for every such trial that has no value of
the current version computed after the trial (a recomputation, done once); with --where, only for the
trials the query selects. No training runs. Everything that can be wrong with the input is refused, as one line and
exit status 2, before Ray starts or anything is written: the measure names, DIR (no trial records, no
kept nets), the resources, the data sets. Rerunning the same command after a kill computes only what
is missing. `sensitivity analyze DIR` then shows the new values with no other step (analysis.versions).
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass

from study import measures as registry
from study.config import ConfigError, TrialConfig
from study.records import check_writable, completed_trial_ids, kept_trial_ids, measured_trial_ids
from study.remeasure import MEASURED_STATUSES, plan
from study.schema import config_from_record
from sweeps import output
from sweeps.cli import add_cluster_arguments, check_cluster_arguments
from sweeps.runner import RunSettings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("location", metavar="DIR", help="a sweep's --out: a directory or s3://bucket/prefix")
    parser.add_argument("--measures", default=None, metavar="NAMES",
                        help="comma-separated measures to compute for every trial, even where the trial computed "
                             f"them (registered: {', '.join(registry.MEASURES)}); default: every measure whose "
                             "values are missing or from an older version")
    parser.add_argument("--where", default=None, metavar="EXPR",
                        help="only the trials for which EXPR holds, a pandas query over the trials table (as "
                             "loaded, measures computed later included), dotted names in backticks: "
                             "\"`hp.random_labels` == 0 and `hp.width` >= 256\"; default: every trial")
    add_cluster_arguments(parser, defaults="1")
    parser.add_argument("--chunk-size", type=int, default=1000,
                        help="trials per Tune experiment (default: %(default)s)")
    parser.add_argument("--max-failures", type=int, default=2,
                        help="retries of a batch whose worker dies (default: %(default)s)")


@dataclass
class MeasurePlan:
    todo: dict[str, list[str]]  # trial_id -> the measures to compute from its kept net
    configs: dict[str, TrialConfig]  # of those trials
    settings: RunSettings
    current: int  # values (trial, measure) that were asked for and are there already: left as they are


def prepare(args: argparse.Namespace, log=print) -> MeasurePlan:
    """Every check, then the plan; ConfigError (one line) on bad input."""
    from analysis.load import load_table
    from analysis.versions import overlay_trials
    from study.raw_data import check_available

    names = registry.parse_names(args.measures, "--measures")
    cpus = 1.0 if args.cpus_per_trial is None else args.cpus_per_trial
    gpus = 0.0 if args.gpus_per_trial is None else args.gpus_per_trial
    check_cluster_arguments(args, cpus, gpus)
    location = output.absolute(args.location)
    if "://" not in location and not os.path.isdir(location):
        raise ConfigError(f"{args.location} is not a directory; give a sweep's --out")
    recorded = completed_trial_ids(location)
    if not recorded:
        raise ConfigError(f"{args.location} holds no trial records (trials/*.parquet); give a sweep's --out")
    kept = kept_trial_ids(location) & recorded
    if not kept:
        raise ConfigError(f"{args.location} keeps no trained nets (models/*.safetensors): its trials ran with "
                          "--no-keep-models or before nets were kept; rerun the sweep into a new directory")
    trials = load_table(location, "trials")
    measured = measured_trial_ids(location)
    if args.where is not None:
        trials = _selected(trials, overlay_trials(location, trials, measured), args.where, args.location)
    todo = plan(trials, measured, kept, names)
    rows = trials.set_index("trial_id")
    configs = {tid: config_from_record(rows.loc[tid]) for tid in todo}
    for dataset in sorted({cfg.dataset for cfg in configs.values()}):
        check_available(dataset, args.data_root)
    if todo:
        check_writable(location)
    eligible = trials["status"].isin(MEASURED_STATUSES)
    without = int((eligible & ~trials["trial_id"].isin(kept)).sum())
    asked = int((eligible & trials["trial_id"].isin(kept)).sum()) * len(names or registry.MEASURES)
    counts = {n: sum(n in todo_names for todo_names in todo.values()) for n in registry.MEASURES}
    log(f"{args.location}: {len(recorded)} trial records"
        + (f", {len(trials)} of them where {args.where}" if args.where is not None else "") + f", {len(kept)} kept nets"
        + (f"; {without} fitted trials kept no net and are skipped" if without else ""))
    log("to compute: " + (", ".join(f"{n} v{registry.VERSIONS[n]} for {c} trials" for n, c in counts.items() if c)
                          or "nothing: every measure is current"))
    settings = RunSettings(out=location, cpus_per_trial=cpus, gpus_per_trial=gpus, max_concurrent=args.max_concurrent,
                           max_failures=args.max_failures, chunk_size=args.chunk_size, data_root=args.data_root,
                           verbose=0 if args.quiet else 1)
    return MeasurePlan(todo, configs, settings, asked - sum(map(len, todo.values())))


def _selected(trials, loaded, where: str, location: str):
    """The rows of `trials` (as written) whose row in `loaded` (the same trials, later measures joined:
    analysis.versions.overlay_trials) satisfies `where`; ConfigError (one line) for a bad query or one that
    matches no trial."""
    from sweeps.feedback import condition

    chosen = set(loaded.loc[condition(loaded, where), "trial_id"])
    if not chosen:
        raise ConfigError(f"--where {where!r} matches none of the {len(loaded)} trials of {location}")
    return trials[trials["trial_id"].isin(chosen)].reset_index(drop=True)


def run(args: argparse.Namespace) -> int:
    from sweeps.cluster import cluster_slots, ray_session, require_ray
    from sweeps.remeasure import execute_measures

    def log(text: str) -> None:
        print(text, flush=True)
    require_ray("measure")
    plan = prepare(args, log)
    todo, configs, settings = plan.todo, plan.configs, plan.settings
    if not todo:
        return 0
    versions = dict(registry.VERSIONS)
    with ray_session(args.address):
        removed = output.clean_stale_temps(settings.out)
        if removed:
            log(f"removed {removed} stale temp files of killed runs")
        report = execute_measures(todo, configs, versions, settings, cluster_slots(settings), log)
    log(f"measured {report.written} values in {report.seconds:.1f} s under {settings.out}; "
        f"{plan.current + report.already} values already current were left as they are")
    for line in report.failed[:5]:
        log(f"  batch failed: {line}")
    for line in report.errors[:10]:
        log(f"  not computed: {line}")
    if len(report.errors) > 10:
        log(f"  ... {len(report.errors) - 10} more not computed")
    if report.missing:
        log(f"  {report.missing} values are still missing: run the same command again")
    return 1 if report.missing else 0
