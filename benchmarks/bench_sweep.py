"""Per-trial overhead of a sweep, unbundled and bundled, in one run; and the driver's memory per chunk.

    .venv/bin/python benchmarks/bench_sweep.py [--preset smoke] [--trials 2000] [--chunk-size 500]
                                               [--bundle 1,auto] [--concurrent 2]

For each --bundle value in turn (comma-separated; 1 = one trial a Tune trial, auto = the sweep's
default), runs `sensitivity sweep PRESET` in this process on a local Ray (2 trials at once on 2 cores)
into a fresh directory and prints, per chunk, the trials, the wall time and the driver's resident memory
(RSS after the chunk, and the process peak so far), then the per-trial overhead: wall time x concurrent
trials, minus the time the trials themselves took (their time.total_s), over the number of trials. The
overhead is split into the writing of each trial's records (3 Parquet files and the kept net, each
fsynced: timed here by writing 100 of the sweep's records again with study.records.write_trial into a
scratch directory) and the rest (Tune, Ray, the worker's glue, idle slots at the chunk's end), which is
what bundling can remove. Memory should stay flat from chunk to chunk.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time

from _common import header


def trial_seconds(location: str, trial_ids: list[str]) -> float:
    """Sum of the trials' own time (time.total_s, measured inside run_trial) from their records."""
    import pyarrow.dataset as pads

    from study.records import record_path, resolve

    fs, root = resolve(location)
    paths = [record_path(root, "trials", t) for t in trial_ids]
    table = pads.dataset(paths, filesystem=fs, format="parquet").to_table(columns=["time.total_s"])
    return float(sum(v for v in table.column("time.total_s").to_pylist() if v is not None))


def writing_seconds(location: str, trial_ids: list[str], n: int = 100) -> float:
    """Mean seconds of study.records.write_trial for up to n of the sweep's records, written again (the same
    rows, points, trajectories and weights bytes) into a scratch directory on the same disk."""
    import pyarrow.parquet as pq

    from study.records import model_path, record_path, write_trial

    chosen = trial_ids[:n]
    loaded = []
    for trial_id in chosen:
        row = pq.read_table(record_path(location, "trials", trial_id)).to_pylist()[0]
        points = pq.read_table(record_path(location, "points", trial_id)).to_pandas()
        paths = pq.read_table(record_path(location, "trajectories", trial_id)).to_pandas()
        weights_file = model_path(location, trial_id)
        weights = open(weights_file, "rb").read() if os.path.exists(weights_file) else None
        loaded.append((trial_id, row, points, paths, weights))
    scratch = tempfile.mkdtemp(prefix="bench-write-", dir=os.path.dirname(location))
    try:
        start = time.perf_counter()
        for trial_id, row, points, paths, weights in loaded:
            write_trial(scratch, trial_id, row, points, paths, weights)
        return (time.perf_counter() - start) / max(1, len(loaded))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def run(options: argparse.Namespace, bundle: str) -> dict:
    from sweeps.cli import add_arguments, sweep
    from sweeps.output import absolute

    out = tempfile.mkdtemp(prefix=f"bench-sweep-{bundle}-", dir=options.out)
    args_parser = argparse.ArgumentParser()
    add_arguments(args_parser)
    args = args_parser.parse_args([options.preset, "--out", out, "--num-samples", str(options.trials),
                                   "--chunk-size", str(options.chunk_size), "--max-concurrent",
                                   str(options.concurrent), "--quiet", "--bundle", bundle])
    from sweeps.runner import _rss_mib

    before = _rss_mib()[0]
    start = time.perf_counter()
    plan, report, counts = sweep(args, log=lambda text: None)
    wall = time.perf_counter() - start
    ids = [t.trial_id for t in plan.sample.trials]
    ran = sum(c.trials for c in report.chunks)
    busy = trial_seconds(absolute(out), ids)
    writing = writing_seconds(absolute(out), ids)
    print(f"--bundle {bundle}: {ran} trials ({dict(counts)}), wall {wall:.1f} s; load average at the end: "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}; driver RSS {before:.0f} MiB before it (earlier runs of "
          "this process included)")
    print(f"{'chunk':>5} {'trials':>6} {'wall s':>8} {'s/trial':>8} {'RSS MiB':>8} {'peak MiB':>8} {'RSS / chunk 1':>13}")
    first = report.chunks[0].rss_mib if report.chunks else float("nan")
    for i, c in enumerate(report.chunks, 1):
        print(f"{i:>5} {c.trials:>6} {c.seconds:>8.1f} {c.seconds / c.trials:>8.3f} {c.rss_mib:>8.0f} "
              f"{c.peak_rss_mib:>8.0f} {c.rss_mib / first:>13.3f}")
    in_chunks = sum(c.seconds for c in report.chunks)
    print()
    shutil.rmtree(out, ignore_errors=True)
    trial = busy / max(ran, 1)
    overhead = (in_chunks * options.concurrent - busy) / max(ran, 1)
    return {"bundle": bundle, "trials": ran, "wall": wall, "outside": wall - in_chunks, "trial": trial,
            "overhead": overhead, "writing": writing}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="smoke")
    parser.add_argument("--trials", type=int, default=2000)
    parser.add_argument("--chunk-size", type=int, default=500)
    parser.add_argument("--concurrent", type=int, default=2)
    parser.add_argument("--bundle", default="1,auto", help="--bundle values of the sweeps, in turn (default: %(default)s)")
    parser.add_argument("--out", default=None, help="directory for the sweeps' outputs (default: a temporary one)")
    options = parser.parse_args()
    header(f"A long {options.preset} sweep: per-trial overhead by --bundle, driver memory per chunk",
           f"benchmarks/bench_sweep.py --preset {options.preset} --trials {options.trials} --chunk-size "
           f"{options.chunk_size} --concurrent {options.concurrent} --bundle {options.bundle}")
    made = options.out is None
    options.out = options.out or tempfile.mkdtemp(prefix="bench-sweep-")
    try:
        rows = [run(options, value.strip()) for value in options.bundle.split(",")]
    finally:
        if made:
            shutil.rmtree(options.out, ignore_errors=True)
    print(f"{options.concurrent} trials at once; overhead = (chunk wall x {options.concurrent} - trial compute) / "
          "trials, split into the records' writing and the rest")
    print(f"{'--bundle':>8} {'trials':>6} {'wall s':>7} {'trial ms':>8} {'overhead ms':>11} {'x trial':>7} "
          f"{'writing ms':>10} {'rest ms':>7} {'rest x trial':>12} {'wall / first':>12}")
    for r in rows:
        rest = r["overhead"] - r["writing"]
        print(f"{r['bundle']:>8} {r['trials']:>6} {r['wall']:>7.1f} {r['trial'] * 1e3:>8.1f} {r['overhead'] * 1e3:>11.1f} "
              f"{r['overhead'] / r['trial']:>7.2f} {r['writing'] * 1e3:>10.1f} {rest * 1e3:>7.1f} "
              f"{rest / r['trial']:>12.2f} {r['wall'] / rows[0]['wall']:>12.2f}")


if __name__ == "__main__":
    main()
