"""Memory: study.resources.estimate_bytes against measured trials, and what a worker holds across trials.

Part 1 runs each config with run_trial in a fresh process (study.resources.measure_trial_memory) and
compares its peak growth (peak resident memory above the process after imports and loading the data
set; the peak is exact: the kernel's high-water mark, reset before the trial) with the estimate. The
configs: the quick preset's largest nets (Fashion-MNIST, 1000 images, 512x4 = width 512, depth 4, each
optimizer at its quick learning rate and step budget; relu, and tanh whose transitions are sampled) and
the regularizers preset's heavy configs (512x4 relu L-BFGS, random labels, init 0.5, each regularizer
L-BFGS admits; the other two with adam). Random labels keep every trial to its whole step budget, so the
L-BFGS history fills: the worst case an estimate must cover. Goal: measured <= estimate <= 2 x measured.

Part 2 runs a sequence of quick-like trials of mixed sizes and regularizers in ONE process, as a sweep
worker does, twice (each in its own process): without and with study.resources.release_memory() after
each trial. It records the resident memory after each trial and each trial's own peak. Goal: between
trials the process holds within 10% of one trial's peak growth above its baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import _common  # noqa: F401  (puts the repository on sys.path)

from _common import ROOT, header, table
from study.config import TrialConfig
from study.resources import MALLOC_ENV, estimate_bytes, estimate_terms, measure_trial_memory

MIB = 2 ** 20
QUICK = {"dataset": "fashion_mnist", "n_train": 1000, "n_test": 1000, "batch_size": 64, "eval_every": 50,
         "n_trajectories": 1, "trajectory_points": 32, "random_labels": 1.0, "width": 512, "depth": 4}
LR = {"sgd": 0.1, "momentum": 0.01, "adam": 0.002, "rmsprop": 0.001, "lbfgs": 0.5}
REGS = {"jacobian": {"reg_strength": 0.01}, "bias_jacobian": {"reg_strength": 100.0},
        "jacobian_matching": {"reg_strength": 0.03, "noise_std": 0.1},
        "jacobian_proj": {"reg_strength": 0.01}, "input_noise": {"noise_std": 0.3}}


def estimate_configs(lbfgs_steps: int, steps: int) -> list[tuple[str, TrialConfig]]:
    """(label, config) of part 1."""
    out = []
    for opt in LR:
        for act in ("relu", "tanh"):
            if act == "tanh" and opt not in ("adam", "lbfgs"):
                continue
            budget = lbfgs_steps if opt == "lbfgs" else steps
            out.append((f"quick 512x4 {act} {opt}", TrialConfig(**QUICK, optimizer=opt, lr=LR[opt], nonlinearity=act,
                                                               max_steps=budget)))
    for reg, settings in REGS.items():
        opt = "adam" if reg in ("jacobian_proj", "input_noise") else "lbfgs"
        budget = lbfgs_steps if opt == "lbfgs" else steps
        out.append((f"regularizers 512x4 relu {opt} {reg}",
                    TrialConfig(**QUICK, optimizer=opt, lr=LR[opt], init_scale=0.5, max_steps=budget, regularizer=reg,
                                **settings)))
    return out


def part_estimates(args: argparse.Namespace) -> None:
    cache = {}
    if args.measured and os.path.exists(args.measured):
        with open(args.measured) as handle:
            cache = json.load(handle)
    rows = []
    for label, cfg in estimate_configs(args.lbfgs_steps, args.steps):
        if cfg.trial_id not in cache:
            cache[cfg.trial_id] = measure_trial_memory(cfg)
            if args.measured:
                with open(args.measured, "w") as handle:
                    json.dump(cache, handle, indent=1)
        got = cache[cfg.trial_id]
        est, terms = estimate_bytes(cfg), estimate_terms(cfg)
        top = sorted(terms, key=terms.get, reverse=True)[:3]
        rows.append({"config": label, "status": got["status"], "steps": got["steps"],
                     "estimate MiB": f"{est / MIB:.0f}", "measured MiB": f"{got['peak_growth'] / MIB:.0f}",
                     "estimate / measured": f"{est / got['peak_growth']:.2f}",
                     "largest terms (MiB)": ", ".join(f"{k} {terms[k] / MIB:.0f}" for k in top)})
    print("Part 1: peak growth of one trial in a fresh process (1 thread) vs estimate_bytes:\n")
    print(table(rows))


def sequence(n: int) -> list[TrialConfig]:
    """n quick-like trials of mixed sizes, optimizers and regularizers (shorter step budgets)."""
    out = []
    shapes = [(128, 2), (512, 4), (256, 3), (512, 2), (128, 4), (256, 2), (512, 3)]
    opts = ["adam", "lbfgs", "sgd", "momentum", "lbfgs", "rmsprop"]
    regs = ["none", "none", "jacobian", "none", "jacobian_matching", "bias_jacobian", "none", "input_noise"]
    for i in range(n):
        (w, depth), opt, reg = shapes[i % len(shapes)], opts[i % len(opts)], regs[i % len(regs)]
        if reg == "input_noise" and opt == "lbfgs":
            opt = "adam"
        settings = {"regularizer": reg, **REGS.get(reg, {})}
        out.append(TrialConfig(**{**QUICK, "width": w, "depth": depth, "random_labels": float(i % 2)},
                               optimizer=opt, lr=LR[opt], max_steps=40 if opt == "lbfgs" else 400,
                               nonlinearity=("relu", "tanh", "relu6", "hardtanh")[i % 4], seed=i, **settings))
    return out


def _sequence_child(n: int, release: bool) -> None:
    import torch

    from study.data import load_dataset
    from study.resources import _malloc_trim, _peak_rss, _reset_peak, release_memory, rss_bytes
    from study.trial import run_trial

    torch.set_num_threads(1)
    cfgs = sequence(n)
    load_dataset(cfgs[0], download=False)
    _malloc_trim()
    baseline, rows = rss_bytes(), []
    for cfg in cfgs:
        before = rss_bytes()
        _reset_peak()
        result = run_trial(cfg, threads=1, download=False)
        peak = _peak_rss()
        del result
        after = release_memory() if release else rss_bytes()
        rows.append({"before": before, "peak": peak, "after": after})
    print(json.dumps({"baseline": baseline, "rows": rows}))


def part_sequence(args: argparse.Namespace) -> None:
    runs = {}
    for malloc, release in (("default", False), ("fixed", False), ("fixed", True)):
        code = ("import sys; sys.path.insert(0, 'benchmarks'); import bench_memory; "
                f"bench_memory._sequence_child({args.trials}, {release})")
        env = {**os.environ, **({MALLOC_ENV: "default"} if malloc == "default" else {})}
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True,
                              env=env)
        runs[(malloc, release)] = json.loads(proc.stdout.strip().splitlines()[-1])
    rows = []
    for (malloc, release), run in runs.items():
        base, trials = run["baseline"], run["rows"]
        growth = max(r["peak"] - r["before"] for r in trials)
        held = [r["after"] - base for r in trials]
        rows.append({"glibc mmap threshold": "glibc's default (before)" if malloc == "default" else "fixed 4 MiB",
                     "release_memory() after each trial": "yes" if release else "no",
                     "trials": len(trials), "baseline MiB": f"{base / MIB:.0f}",
                     "largest trial's peak growth MiB": f"{growth / MIB:.0f}",
                     "held after trials, median / max MiB": f"{sorted(held)[len(held) // 2] / MIB:.0f} / {max(held) / MIB:.0f}",
                     "max held / largest peak growth": f"{100 * max(held) / growth:.0f}%",
                     "held after the last trial MiB": f"{held[-1] / MIB:.0f}",
                     "process peak MiB": f"{max(r['peak'] for r in trials) / MIB:.0f}"})
    print(f"Part 2: {args.trials} quick-like trials in one process (mixed widths 128-512, depths 2-4, the 5 "
          "optimizers, none/jacobian/jacobian_matching/bias_jacobian/input_noise; 'held' = resident memory "
          "after a trial minus the baseline after imports and data):\n")
    print(table(rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lbfgs-steps", type=int, default=300, help="L-BFGS step budget of part 1 (quick: 300)")
    parser.add_argument("--steps", type=int, default=4000, help="first-order step budget of part 1 (quick: 4000)")
    parser.add_argument("--trials", type=int, default=40, help="trials of part 2 (0: skip it)")
    parser.add_argument("--measured", default=None, help="JSON file of part 1's measurements, reused and extended")
    parser.add_argument("--skip-estimates", action="store_true", help="run part 2 only")
    args = parser.parse_args()
    command = " ".join(["python benchmarks/bench_memory.py"] + sys.argv[1:])
    header("Memory: estimate vs measured, and a worker across trials", command)
    if not args.skip_estimates:
        part_estimates(args)
    if args.trials:
        part_sequence(args)


if __name__ == "__main__":
    main()
