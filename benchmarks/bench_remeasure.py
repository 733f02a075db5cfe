"""Re-measuring a finished sweep from its kept nets vs the sweep that trained them, in one run.

    .venv/bin/python benchmarks/bench_remeasure.py [--trials 100] [--out DIR]

Runs `sensitivity sweep quick -n N` (local Ray, two trials at once on two cores), then `sensitivity measure
DIR --measures <every measure>` on its output, in this process, and prints both wall times and their
ratio. The goal: at most the measures' share of the sweep, the sum of the trials' time.measure_s over
the sum of their time.total_s (both from the records of the same sweep), since re-measuring does the
measures' work and no training. Both commands start and stop their own Ray, as a user's would.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import shutil
import tempfile
import time
from pathlib import Path

from _common import header


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--out", default=None, help="output directory (default: a temporary one, removed)")
    options = parser.parse_args()

    from analysis.load import load_table
    from study import measures as registry
    from sweeps.command import build_parser
    from sweeps.cli import sweep
    from sweeps.measure_cli import run as measure

    names = ",".join(registry.MEASURES)
    header("Re-measuring a finished quick sweep from its kept nets vs the sweep that trained them",
           f"benchmarks/bench_remeasure.py --trials {options.trials}")
    out = options.out or tempfile.mkdtemp(prefix="bench-remeasure-")
    start = time.perf_counter()
    sweep(build_parser("sweep").parse_args(["sweep", "quick", "--out", out, "-n", str(options.trials), "--quiet"]),
          log=lambda text: None)
    swept = time.perf_counter() - start
    captured = io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(captured):
        code = measure(build_parser("measure").parse_args(["measure", out, "--measures", names, "--quiet"]))
    measured = time.perf_counter() - start
    trials = load_table(out, "trials")
    share = trials["time.measure_s"].sum() / trials["time.total_s"].sum()
    models = sum(p.stat().st_size for p in Path(out, "models").iterdir())
    print(f"{len(trials)} trials ({trials['status'].value_counts().to_dict()}), measures: {names}")
    print(f"sweep: {swept:.1f} s; measure: {measured:.1f} s (exit {code}): ratio {measured / swept:.3f}")
    print(f"the measures' share of the sweep's trial time (sum time.measure_s / sum time.total_s): {share:.3f}")
    print(f"kept nets: {models / 2 ** 20:.1f} MiB, {models / len(trials) / 2 ** 20:.2f} MiB a trial")
    print("measure's own summary: " + " | ".join(line.strip() for line in captured.getvalue().splitlines()[-2:]))
    if options.out is None:
        shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
