"""Driver memory and per-trial overhead of a long `smoke` sweep (default 2000 trials, chunks of 500).

    .venv/bin/python benchmarks/bench_sweep.py [--trials 2000] [--chunk-size 500] [--bundle K] [--out DIR]

Runs `sensitivity sweep smoke` in this process on a local Ray (2 trials at once on 2 cores) and prints,
per chunk, the trials, the wall time and the driver's resident memory (RSS after the chunk, and the
process peak so far), then the per-trial overhead: wall time x concurrent trials, minus the time the
trials themselves took (their time.total_s), over the number of trials. Memory should stay flat from
chunk to chunk: each chunk is its own Tune experiment, and nothing of it survives the chunk.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=2000)
    parser.add_argument("--chunk-size", type=int, default=500)
    parser.add_argument("--concurrent", type=int, default=2)
    parser.add_argument("--bundle", type=int, default=None, help="--bundle K of the sweep (default: off)")
    parser.add_argument("--out", default=None, help="output directory (default: a temporary one, removed)")
    options = parser.parse_args()

    from sweeps.cli import add_arguments, sweep
    from sweeps.output import absolute

    header("A long smoke sweep: driver memory per chunk, per-trial overhead",
           f"benchmarks/bench_sweep.py --trials {options.trials} --chunk-size {options.chunk_size} "
           f"--concurrent {options.concurrent}" + (f" --bundle {options.bundle}" if options.bundle else ""))
    out = options.out or tempfile.mkdtemp(prefix="bench-sweep-")
    args_parser = argparse.ArgumentParser()
    add_arguments(args_parser)
    args = args_parser.parse_args(["smoke", "--out", out, "--num-samples", str(options.trials), "--chunk-size",
                                   str(options.chunk_size), "--max-concurrent", str(options.concurrent), "--quiet",
                                   *(["--bundle", str(options.bundle)] if options.bundle else [])])
    start = time.perf_counter()
    plan, report, counts = sweep(args, log=lambda text: None)
    wall = time.perf_counter() - start
    ran = sum(c.trials for c in report.chunks)
    busy = trial_seconds(absolute(out), [t.trial_id for t in plan.sample.trials])
    print(f"{options.concurrent} trials at once; load average at the end: "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}\n")
    print(f"{'chunk':>5} {'trials':>6} {'wall s':>8} {'s/trial':>8} {'RSS MiB':>8} {'peak MiB':>8} {'RSS / chunk 1':>13}")
    first = report.chunks[0].rss_mib if report.chunks else float("nan")
    for i, c in enumerate(report.chunks, 1):
        print(f"{i:>5} {c.trials:>6} {c.seconds:>8.1f} {c.seconds / c.trials:>8.3f} {c.rss_mib:>8.0f} "
              f"{c.peak_rss_mib:>8.0f} {c.rss_mib / first:>13.3f}")
    in_chunks = sum(c.seconds for c in report.chunks)
    overhead = (in_chunks * options.concurrent - busy) / max(ran, 1)
    print(f"{ran} trials ({dict(counts)}), wall {wall:.1f} s ({wall - in_chunks:.1f} s of it before/after the "
          f"chunks: sampling, checks, Ray start and stop, summary)")
    print(f"trial compute (sum of time.total_s): {busy:.1f} s = {busy / max(ran, 1) * 1000:.0f} ms a trial; "
          f"per-trial overhead (chunk wall x {options.concurrent} - compute) / trials: {overhead * 1000:.0f} ms "
          f"= {overhead / (busy / max(ran, 1)):.2f} x the trial itself")
    if options.out is None:
        shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
