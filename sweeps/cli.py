"""`sensitivity sweep PRESET --out DIR ...`: sample a preset's trials and run those not yet recorded.

Everything that can be wrong with the input is refused, as one line, before anything is started or
written: the preset, every --set field and value (every sampled TrialConfig is validated), every data
set's availability, the output location, the Ray address (a bounded wait), and the memory of every
config against a trial's share. Then one metadata file per launch goes to DIR/sweeps/, the pending
trials run chunk by chunk on Ray Tune, and a summary from the Parquet records ends the run.

Running the same command again runs only the trials without a complete record (after success,
Ctrl-C or kill -9 of the driver): the sample is a seeded function of (preset, --set, --seed, N).
With --from DIR (--top K / --where EXPR) the base configs are selected from a finished sweep instead
(sweeps/feedback.py) and --set pins fields of every selected base; --seed then only names the sweep.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import socket
import sys
import time
from dataclasses import dataclass

from study.cli import add_skip_argument, skipped_measures
from study.config import ConfigError
from study.records import check_writable
from study.schema import STATUSES
from sweeps import feedback, output
from sweeps.presets import PRESETS, describe, get_preset
from sweeps.cluster import check_resources, cluster_slots, ray_session, require_ray
from sweeps.runner import RunReport, RunSettings, execute
from sweeps.sampling import Sample, parse_overrides, sample


def add_cluster_arguments(parser: argparse.ArgumentParser, defaults: str = "the preset's, 1") -> None:
    """Where and how wide the Tune trials run: the flags `sweep` and `measure` share."""
    parser.add_argument("--address", default=None, metavar="auto|HOST:PORT",
                        help="join this Ray cluster; default: start a local Ray on 127.0.0.1")
    parser.add_argument("--max-concurrent", type=int, default=None, metavar="K",
                        help="at most K trials at once (default: as many as the resources allow)")
    parser.add_argument("--cpus-per-trial", type=float, default=None, metavar="C",
                        help=f"CPUs a trial reserves; also its torch threads (default: {defaults})")
    parser.add_argument("--gpus-per-trial", type=float, default=None, metavar="G",
                        help="GPUs a trial reserves, fractions allowed (0.25: four trials a GPU); >0 runs on cuda")
    parser.add_argument("--data-root", default=None, help="where data sets live on every node (default: "
                        "$SENSITIVITY_DATA_ROOT or ~/.cache/sensitivity-study/data)")
    parser.add_argument("--quiet", action="store_true", help="no Tune progress table")


def check_cluster_arguments(args: argparse.Namespace, cpus: float, gpus: float) -> None:
    """ConfigError (one line) for CPUs, GPUs, --max-concurrent, --chunk-size or --max-failures out of range."""
    if not cpus >= 0 or not gpus >= 0 or cpus + gpus == 0:
        raise ConfigError(f"--cpus-per-trial and --gpus-per-trial must be >= 0 and not both 0, got {cpus}, {gpus}")
    if gpus > 1 and gpus != int(gpus):
        raise ConfigError(f"--gpus-per-trial above 1 must be a whole number, got {gpus}")
    for name in ("max_concurrent", "chunk_size"):
        value = getattr(args, name, None)
        if value is not None and value < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be a positive integer, got {value}")
    if args.max_failures < 0:
        raise ConfigError(f"--max-failures must be >= 0, got {args.max_failures}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = "presets:\n" + "\n\n".join(describe(p) for p in PRESETS.values())
    parser.add_argument("preset", metavar="PRESET", help=f"one of: {', '.join(PRESETS)}")
    parser.add_argument("--out", required=True, help="output directory every node sees, or s3://bucket/prefix "
                        "(query parameters such as ?endpoint_override=HOST:PORT&scheme=http are passed to pyarrow)")
    parser.add_argument("--num-samples", "-n", type=int, default=None, metavar="N",
                        help="distinct trials to sample (pairs for a pairs preset; seeds per grid point for "
                             "the grid preset); default: the preset's")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE|v1,v2,...",
                        help="pin a TrialConfig field, or draw it from a comma-separated list (repeatable)")
    add_cluster_arguments(parser)
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="seed of the sample of configs")
    parser.add_argument("--chunk-size", type=int, default=500,
                        help="Tune trials per Tune experiment, a bundle counting as one (with automatic bundles, "
                             "their mean size over the pending trials) (default: %(default)s)")
    parser.add_argument("--max-failures", type=int, default=2,
                        help="retries of a trial whose worker dies before it gets an error row (default: %(default)s)")
    parser.add_argument("--pack", type=int, default=None, metavar="S",
                        help="train up to S compatible configs (same architecture and schedule) as one Tune trial, "
                             "batched (study.packed); each still gets its own record (default: off)")
    parser.add_argument("--bundle", default="auto", metavar="K|auto",
                        help="trials (or packs) one Tune trial runs one after the other, so that Tune's cost per "
                             "trial (about 0.1 s of a slot) is paid once for many short ones; each still gets its "
                             "own record, and a rerun runs only those without one. auto: trials estimated under "
                             "1 s (study.cost) in bundles of at most 3 s, at least two a slot, longer ones alone; "
                             "1: none (default: %(default)s)")
    parser.add_argument("--keep-models", action=argparse.BooleanOptionalAction, default=True,
                        help="keep each trained net as models/<trial_id>.safetensors (about 4 bytes a parameter), so "
                             "measures can be added later with `sensitivity measure`; default: keep")
    add_skip_argument(parser)
    parser.add_argument("--from", dest="from_dir", default=None, metavar="DIR",
                        help="take the base configs from the finished sweep in DIR (a preset with an "
                             "intervention, e.g. regularizers): the trials --top / --where select, each rerun as "
                             "its twin and variants")
    parser.add_argument("--top", type=int, default=None, metavar="K",
                        help="with --from: the K trials of DIR with the largest gap.loss (status ok)")
    parser.add_argument("--where", default=None, metavar="EXPR",
                        help="with --from: the trials of DIR (status ok) for which EXPR holds, a pandas query over "
                             "the trials table, dotted names in backticks: \"`hp.width` >= 256 and `gap.loss` > 0.5\"")


@dataclass
class Plan:
    preset: str
    overrides: dict
    seed: int
    sample: Sample
    settings: RunSettings
    address: str | None
    source: dict | None = None  # --from: where the base configs came from (metadata)


def parse_bundle(value: str | int) -> int:
    """--bundle's value as RunSettings.bundle: "auto" -> 0, an integer K >= 1 -> K; ConfigError otherwise."""
    text = str(value).strip().lower()
    if text == "auto":
        return 0
    if not text.isdigit() or int(text) < 1:
        raise ConfigError(f"--bundle must be auto or a whole number of trials a Tune trial runs (1: one, no "
                          f"bundles), got {value!r}")
    return int(text)


def prepare(args: argparse.Namespace) -> Plan:
    """Every check that needs neither Ray nor writing: ConfigError (one line) on bad input."""
    require_ray("sweep")
    preset = get_preset(args.preset)
    overrides = parse_overrides(args.set)
    skip = skipped_measures(args)
    feedback.check_arguments(args, preset)
    n = preset.default_n if args.num_samples is None else args.num_samples
    if args.seed < 0:
        raise ConfigError(f"--seed must be a non-negative integer, got {args.seed}")
    cpus = preset.cpus_per_trial if args.cpus_per_trial is None else args.cpus_per_trial
    gpus = preset.gpus_per_trial if args.gpus_per_trial is None else args.gpus_per_trial
    check_cluster_arguments(args, cpus, gpus)
    if args.pack is not None and args.pack < 2:
        raise ConfigError(f"--pack must be at least 2 (nets trained together), got {args.pack}; leave it out to "
                          "train one net per Tune trial")
    bundle = parse_bundle(args.bundle)
    source = None
    if args.from_dir is not None:
        bases, selected = feedback.select_bases(args.from_dir, preset, args.top, args.where)
        drawn = feedback.expand_bases(preset, bases, overrides, args.seed)  # validates every TrialConfig
        source = {"from": args.from_dir, "top": args.top, "where": args.where, "selected_trial_ids": selected}
    else:
        drawn = sample(preset, overrides, args.seed, n)  # validates every sampled TrialConfig
    from study.raw_data import check_available, check_sizes

    for planned in drawn.trials:
        check_sizes(planned.config)
    for name in sorted({t.config.dataset for t in drawn.trials}):
        check_available(name, args.data_root)
    check_writable(args.out)
    moved = list(preset.intervention.baseline) if preset.intervention else []  # the intervention's fields first
    candidates = moved + sorted((set(preset.factors) | set(preset.linked) | set(overrides)) - set(moved))
    varying = [k for k in candidates if len({getattr(t.config, k) for t in drawn.trials}) > 1][:6]
    settings = RunSettings(out=output.absolute(args.out), cpus_per_trial=cpus, gpus_per_trial=gpus,
                           max_concurrent=args.max_concurrent, max_failures=args.max_failures,
                           chunk_size=args.chunk_size, data_root=args.data_root, sweep_id=drawn.sweep_id,
                           parameter_columns=tuple(varying), verbose=0 if args.quiet else 1, pack=args.pack or 1,
                           bundle=bundle, keep_models=args.keep_models, skip_measures=skip)
    return Plan(args.preset, overrides, args.seed, drawn, settings, args.address, source)


def _metadata(plan: Plan, started: dt.datetime) -> dict:
    return {"sweep_id": plan.sample.sweep_id, "preset": plan.preset, "preset_space": describe(get_preset(plan.preset)),
            "overrides": {k: list(v) for k, v in plan.overrides.items()}, "seed": plan.seed,
            "num_samples": plan.sample.requested, "n_trials": len(plan.sample.trials),
            "exhausted": plan.sample.exhausted, "trial_ids": [t.trial_id for t in plan.sample.trials],
            "address": plan.address or "local", "host": socket.gethostname(), "pid": os.getpid(),
            "cpus_per_trial": plan.settings.cpus_per_trial, "gpus_per_trial": plan.settings.gpus_per_trial,
            "max_concurrent": plan.settings.max_concurrent, "pack": plan.settings.pack,
            "bundle": plan.settings.bundle or "auto", "keep_models": plan.settings.keep_models,
            "skip_measures": list(plan.settings.skip_measures),
            "started_at": started.isoformat(), "ended_at": None,
            **({"source": plan.source} if plan.source else {})}


def summary(plan: Plan, report: RunReport, counts: dict, seconds: float, out_of_memory: int = 0) -> str:
    n = len(plan.sample.trials)
    ran = sum(c.trials for c in report.chunks)
    by_status = ", ".join(f"{s} {counts[s]}" for s in STATUSES if counts.get(s)) or "none"
    others = ", ".join(f"{s} {c}" for s, c in counts.items() if s not in STATUSES)
    lines = [f"sweep {plan.sample.sweep_id} ({plan.preset}, N={plan.sample.requested}, seed {plan.seed}): "
             f"{sum(counts.values())} of {n} trials recorded under {plan.settings.out}",
             f"  by status: {by_status}" + (f", {others}" if others else "")
             + (f"; {out_of_memory} of the errors out of memory" if out_of_memory else ""),
             f"  this launch: {ran} trials run, {report.skipped} already recorded; wall time {seconds:.1f} s, "
             f"{ran / seconds * 3600 if seconds > 0 else 0:.0f} trials/hour"]
    if report.missing:
        lines.append(f"  {report.missing} trials have no record yet: run the same command again")
    skip = plan.settings.skip_measures
    if skip:
        lines.append(f"  measures skipped: {', '.join(skip)}; " + (
            f"`sensitivity measure {plan.settings.out}` computes them from the kept nets" if plan.settings.keep_models
            else "they cannot be added later (--no-keep-models)"))
    return "\n".join(lines)


def sweep(args: argparse.Namespace, log=print) -> tuple[Plan, RunReport, dict]:
    """Validate, then run; returns the plan, the run report and the status counts from the records."""
    start = time.perf_counter()
    plan = prepare(args)
    if plan.sample.exhausted:
        preset = get_preset(plan.preset)
        unit = "base configs" if preset.intervention else "pairs" if preset.pairs else "trials"
        log(f"note: the space of preset {plan.preset} with these --set holds fewer than N={plan.sample.requested} "
            f"distinct {unit} (found {len(plan.sample.trials)} trials); running those")
    for note in plan.sample.notes:
        log(note)
    with ray_session(plan.address):
        for note in check_resources(list(plan.sample.trials), plan.settings, joined=bool(plan.address)):
            log(note)
        started = dt.datetime.now(dt.timezone.utc)
        meta = _metadata(plan, started)
        relative = f"sweeps/{plan.sample.sweep_id}-{started:%Y%m%dT%H%M%SZ}-{os.getpid()}.json"
        removed = output.clean_stale_temps(plan.settings.out)
        if removed:
            log(f"removed {removed} stale temp files of killed runs")
        output.write_json_atomic(plan.settings.out, relative, meta)
        try:
            report = execute(list(plan.sample.trials), plan.settings, log=log, slots=cluster_slots(plan.settings))
        except KeyboardInterrupt:
            log(f"interrupted: {len(_recorded(plan))} of {len(plan.sample.trials)} trials recorded; "
                "run the same command again to run the rest")
            raise
    by_status, out_of_memory = output.record_counts(plan.settings.out, _recorded(plan))
    counts = dict(by_status)
    seconds = time.perf_counter() - start
    meta.update({"ended_at": dt.datetime.now(dt.timezone.utc).isoformat(), "status_counts": counts,
                 "out_of_memory": out_of_memory, "ran": sum(c.trials for c in report.chunks),
                 "skipped": report.skipped, "missing": report.missing,
                 "wall_s": seconds})
    try:
        output.write_json_atomic(plan.settings.out, relative, meta)
    except OSError as exc:  # e.g. the disk filled up: the records are the source of truth, report them anyway
        log(f"warning: could not update {relative}: {exc}")
    log(summary(plan, report, counts, seconds, out_of_memory))
    return plan, report, counts


def _recorded(plan: Plan) -> list[str]:
    from study.records import completed_trial_ids

    done = completed_trial_ids(plan.settings.out)
    return [t.trial_id for t in plan.sample.trials if t.trial_id in done]


def run(args: argparse.Namespace) -> int:
    def log(text: str) -> None:
        print(text, flush=True)
    _, report, _ = sweep(args, log=log)
    return 1 if report.missing else 0


if __name__ == "__main__":  # pragma: no cover
    from sweeps.command import main

    sys.exit(main(["sweep", *sys.argv[1:]]))
