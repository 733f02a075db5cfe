"""Run every benchmarks/bench_*.py, each in its own process under a time limit, and print their tables.

    python benchmarks/run_all.py                       # all of them, about 10 minutes on 2 cores
    python benchmarks/run_all.py --only packed jacobian
    python benchmarks/run_all.py --out benchmarks/last_run.md
    python benchmarks/run_all.py --device cuda         # the device-aware ones (DEVICE_AWARE) on the GPU

The benchmarks run one after another (never two at once: they time the machine), in name order,
with the arguments in QUICK_ARGS (smaller settings of the slower ones, so that the whole run fits
`--budget` seconds); `--full` runs each with its own defaults instead. Each gets at most `--limit`
seconds and never more than the budget left, keeping 30 s for each one still to come. A benchmark
that runs over is stopped (its output so far is still printed). A benchmark whose command line no
longer accepts its QUICK_ARGS is rerun with its defaults. The run ends with a summary table.
"""

from __future__ import annotations

import argparse
import glob
import os
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
RESERVE_S = 30  # kept back for each benchmark still to run

# Settings that keep each benchmark to a minute or two on 2 shared cores (see each one's --help).
QUICK_ARGS: dict[str, list[str]] = {
    "bench_jacobian.py": ["--repeats", "5"],
    "bench_packed.py": ["--steps", "100", "--repeats", "3"],
    "bench_transitions.py": ["--budget", "15"],
    "bench_regularizers.py": ["--steps", "10", "--repeats", "3"],
    "bench_sweep.py": ["--trials", "300", "--chunk-size", "100"],
    "bench_orchestration.py": ["--trials", "20"],
    "bench_trial.py": ["--sweep-trials", "30"],
    "bench_memory.py": ["--lbfgs-steps", "50", "--steps", "500", "--trials", "12"],
    "bench_remeasure.py": ["--trials", "30"],
}

DEVICE_AWARE = ("bench_jacobian.py", "bench_packed.py", "bench_regularizers.py", "bench_transitions.py",
                "bench_trial.py")  # take --device cpu|cuda|cuda:N


def run_one(path: str, extra: list[str], limit: float) -> tuple[str, str, float]:
    """(status, output, seconds) of one benchmark run in its own process group, stopped after `limit` s."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, path, *extra], cwd=os.path.dirname(HERE), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=limit)
        status = "ok" if proc.returncode == 0 else f"failed (exit {proc.returncode})"
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)  # the benchmark and whatever it started (Ray workers)
        try:
            output, _ = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            output, _ = proc.communicate()
        status = f"stopped after {limit:.0f} s"
    return status, output or "", time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", nargs="+", default=None, help="names, e.g. packed jacobian (bench_ prefix optional)")
    parser.add_argument("--budget", type=float, default=570.0, help="seconds for the whole run")
    parser.add_argument("--limit", type=float, default=240.0, help="seconds for one benchmark at most")
    parser.add_argument("--full", action="store_true", help="each benchmark with its own default settings")
    parser.add_argument("--out", default=None, help="also write everything printed to this Markdown file")
    parser.add_argument("--device", default=None,
                        help=f"cpu | cuda | cuda:N for {', '.join(DEVICE_AWARE)} (the others run on the CPU)")
    args = parser.parse_args()
    paths = sorted(glob.glob(os.path.join(HERE, "bench_*.py")))
    if args.only:
        wanted = {n if n.startswith("bench_") else f"bench_{n}" for n in args.only}
        wanted = {n if n.endswith(".py") else f"{n}.py" for n in wanted}
        unknown = sorted(wanted - {os.path.basename(p) for p in paths})
        if unknown:
            parser.error(f"no such benchmark: {', '.join(unknown)}; have: "
                         + ", ".join(os.path.basename(p) for p in paths))
        paths = [p for p in paths if os.path.basename(p) in wanted]
    deadline = time.perf_counter() + args.budget
    chunks, summary = [], []

    def emit(text: str) -> None:
        print(text, flush=True)
        chunks.append(text)

    emit(f"# Benchmarks ({len(paths)}): python benchmarks/run_all.py" + (" --full" if args.full else "") + "\n")
    for k, path in enumerate(paths):
        name = os.path.basename(path)
        left = deadline - time.perf_counter() - RESERVE_S * (len(paths) - k - 1)
        limit = max(RESERVE_S, min(args.limit, left))
        extra = [] if args.full else list(QUICK_ARGS.get(name, []))
        if args.device and name in DEVICE_AWARE:
            extra += ["--device", args.device]
        status, output, seconds = run_one(path, extra, limit)
        if extra and status.startswith("failed (exit 2)") and "unrecognized arguments" in output:
            extra = ["--device", args.device] if args.device and name in DEVICE_AWARE else []
            status, output, seconds = run_one(path, extra, max(RESERVE_S, deadline - time.perf_counter()
                                                               - RESERVE_S * (len(paths) - k - 1)))
        emit(f"<!-- {name} {' '.join(extra)} -->\n{output.rstrip()}\n")
        summary.append((name, " ".join(extra) or "(defaults)", status, seconds))
    emit("## Summary\n")
    emit("| benchmark | arguments | status | seconds |\n|---|---|---|---|")
    for name, extra, status, seconds in summary:
        emit(f"| {name} | {extra} | {status} | {seconds:.0f} |")
    if args.out:
        with open(args.out, "w") as handle:
            handle.write("\n".join(chunks) + "\n")
    sys.exit(0 if all(s == "ok" for _, _, s, _ in summary) else 1)


if __name__ == "__main__":
    main()
