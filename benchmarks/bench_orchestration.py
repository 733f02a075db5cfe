"""The same K trials through Ray Tune vs an in-process loop of run_trial, in one run.

    .venv/bin/python benchmarks/bench_orchestration.py [--trials 100] [--sizes smoke,bigger] [--repeats 1]

Both arms write every trial's three tables (the loop calls TrialResult.write). Ray runs the trials one
at a time on one CPU ("Ray x1": the orchestration overhead) and two at a time ("Ray x2": throughput on
2 cores); Ray is started once, before all runs, and its start is reported apart. The arms are
interleaved (loop, x1, x2, loop, ...) and medians reported, since the machine may be shared.
"first rec" is the time from launching a sweep to its first record: Tune's setup, the actor's process
start and imports (torch), the first trial; "excl. first" compares the remaining K-1 trials.
Sizes: `smoke` is the preset (~0.1 s a trial); `bigger` is smoke with 2000 steps of a width-64 net on
512 points (~1 s a trial), and `quick` trials of a few seconds like the quick preset's, to show the
fixed costs shrink relative to the trial.
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import tempfile
import time

from _common import header, interleaved, median, table

SIZES = {"smoke": [], "bigger": ["max_steps=2000", "eval_every=500", "width=64", "n_train=512", "n_test=512",
                                 "batch_size=64"],
         # quick: trials of a few seconds, like the quick preset's (784-d inputs, width 256, 1000 points)
         "quick": ["dataset=synthetic", "synthetic_dim=784", "n_train=1000", "n_test=1000", "width=256",
                   "depth=3", "max_steps=300", "eval_every=100", "batch_size=64", "n_trajectories=1"]}


def first_record_time(out: str) -> float:
    import pyarrow.dataset as pads

    table_ = pads.dataset(f"{out}/trials", format="parquet").to_table(columns=["created_at"])
    return min(table_.column("created_at").to_pylist()).timestamp()


def run_sweep(out: str, k: int, sets: list[str], concurrent: int) -> float:
    """Run a sweep of K smoke trials into `out`; returns seconds from launch to the first record."""
    from sweeps.cli import add_arguments, sweep

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    argv = ["smoke", "--out", out, "--num-samples", str(k), "--max-concurrent", str(concurrent), "--quiet"]
    for s in sets:
        argv += ["--set", s]
    launched = time.time()
    sweep(parser.parse_args(argv), log=lambda text: None)
    return first_record_time(out) - launched


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--sizes", default="smoke,bigger")
    parser.add_argument("--repeats", type=int, default=1)
    options = parser.parse_args()

    import torch

    from study.trial import run_trial
    from sweeps.presets import SMOKE
    from sweeps.cluster import ray_session
    from sweeps.sampling import parse_overrides, sample

    header("Ray Tune vs an in-process loop of run_trial",
           f"benchmarks/bench_orchestration.py --trials {options.trials} --sizes {options.sizes} "
           f"--repeats {options.repeats}")
    torch.set_num_threads(1)
    root = tempfile.mkdtemp(prefix="bench-orchestration-")
    fresh = (os.path.join(root, str(i)) for i in itertools.count())
    k, rows = options.trials, []
    try:
        start = time.perf_counter()
        with ray_session(None):
            ray_start = time.perf_counter() - start
            for size in options.sizes.split(","):
                sets = SIZES[size]
                trials = sample(SMOKE, parse_overrides(sets), 0, k).trials
                firsts: dict[int, list[float]] = {1: [], 2: []}

                def loop() -> None:
                    out = next(fresh)
                    for planned in trials:
                        run_trial(planned.config, threads=1).write(out)

                def ray(concurrent: int) -> None:
                    firsts[concurrent].append(run_sweep(next(fresh), k, sets, concurrent))

                times = interleaved({"loop": loop, "x1": lambda: ray(1), "x2": lambda: ray(2)},
                                    repeats=options.repeats, warmup=0)
                lp, one, two, first = (median(times["loop"]), median(times["x1"]), median(times["x2"]),
                                       median(firsts[1]))
                rows.append({"size": size, "K": k, "loop": f"{lp:.1f} s", "ms/trial": f"{lp / k * 1000:.0f}",
                             "Ray x1": f"{one:.1f} s", "x1 / loop": f"{one / lp:.2f}",
                             "first rec (x1)": f"{first:.1f} s",
                             "x1 / loop excl. first": f"{(one - first) / (lp * (k - 1) / k):.2f}",
                             "Ray x2": f"{two:.1f} s", "loop / x2": f"{lp / two:.2f}"})
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"Ray start (once, not in the ratios): {ray_start:.1f} s; {options.repeats} run(s) of each arm, medians\n")
    print(table(rows))
    print("x1 / loop: Ray's wall time over the loop's for the same trials, one at a time (1.15 = 15% overhead); "
          "loop / x2: speed-up of two trials at a time on this machine.")


if __name__ == "__main__":
    main()
