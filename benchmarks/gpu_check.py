"""Every GPU check in one run, from a plain source checkout with nothing installed (no Ray needed).

    PYTHONPATH=. python3 benchmarks/gpu_check.py --data-root DIR --out gpu_check.json [--device cuda]
    (benchmarks/gpu_check.sh runs exactly this with the image's own python3)

DIR holds Fashion-MNIST's four IDX files (gzipped, as Debian ships them: about 30 MB), which travel with
the checkout. Sections, each written to the results file as soon as it is done (atomically: a run cut
short keeps what finished):

- env: Python, torch, the card (nvidia-smi), whether Ray is importable;
- tests: tests/test_gpu.py (cuda records = CPU records within float32 rounding: trial, pack, Jacobian);
- quick: the quick preset's first 30 trials (seed 0) one after another on the device: trials per hour
  (the CPU side of the ratio: the same trials on the 2-core machine, fractional_1 and fractional_2 run
  with --device cpu --processes 2, in benchmarks/RESULTS.md);
- packed: S = 8 nets trained together vs one after another, widths 16-256, same steps either way;
- fractional_1, fractional_P, fractional_P_pack: 1 and P (--processes, 4) processes sharing the card, as
  Ray places trials with --gpus-per-trial 1/P, each taking the quick section's trials (or packs of 8
  seeds of each) from one queue; the card's utilization sampled every
  0.5 s, each process's peak memory, trials per hour;
- full_data: one Fashion-MNIST trial on all 60,000 training images, 512x3, to 100% train accuracy;
- paper_cost: training steps timed per architecture on the card, and from them and the full-data trial's
  step count what the `paper` preset's 335,671 nets would cost in GPU-hours.

--small shrinks every section (the CPU dry run of tests/test_gpu_check.py). The fractional sections live in
benchmarks/gpu_sharing.py, paper_cost in benchmarks/gpu_paper_cost.py.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable

from _common import ROOT, synchronize  # _common puts the repository on sys.path
from gpu_paper_cost import paper_cost_section
from gpu_sharing import fractional_section


# -- results ----------------------------------------------------------------------------------

class Results:
    """The results file: one JSON object, rewritten atomically after each section."""

    def __init__(self, path: str):
        self.path, self.data = path, {"sections": {}, "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}

    def section(self, name: str, run: Callable[[], dict[str, Any]]) -> None:
        start = time.perf_counter()
        print(f"== {name}", flush=True)
        try:
            found = {"ok": True, **run()}
        except Exception as exc:  # one broken section must not cost the others theirs
            found = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:2000]}
        found["seconds"] = round(time.perf_counter() - start, 2)
        self.data["sections"][name] = found
        print(json.dumps(found, indent=1)[:3000], flush=True)
        self.write()

    def write(self) -> None:
        directory = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(directory, exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix=".tmp-gpu-check-", dir=directory)
        with os.fdopen(fd, "w") as handle:
            json.dump(self.data, handle, indent=1, default=str)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, self.path)


# -- sections ---------------------------------------------------------------------------------

def env_section(device: str) -> dict[str, Any]:
    import torch

    found: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__,
                             "cuda_available": torch.cuda.is_available(), "cpus": os.cpu_count(),
                             "platform": platform.platform()}
    try:
        import ray  # noqa: F401
        found["ray"] = ray.__version__
    except ImportError:
        found["ray"] = None
    if device.startswith("cuda"):
        found["card"] = torch.cuda.get_device_name()
        found["card_memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2 ** 30, 1)
        try:
            found["nvidia_smi"] = subprocess.run(
                ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                capture_output=True, text=True, timeout=20).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            found["nvidia_smi"] = None
    return found


def tests_section(timeout_s: float) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_gpu.py"],
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout_s)
    tail = (proc.stdout + proc.stderr).strip().splitlines()[-30:]
    counts = {k: int(v) for v, k in re.findall(r"(\d+) (passed|failed|skipped|error)", "\n".join(tail[-3:]))}
    return {"returncode": proc.returncode, "counts": counts, "tail": tail}


def quick_configs(n: int, small: bool, seed: int = 0) -> list:
    """The quick preset's first n trials (sweeps.sampling with seed 0); --small: 100 steps at most."""
    from sweeps.presets import get_preset
    from sweeps.sampling import sample

    cfgs = [t.config for t in sample(get_preset("quick"), {}, seed, n).trials]
    return [c.replace(max_steps=min(c.max_steps, 100)) for c in cfgs] if small else cfgs


def quick_section(device: str, data_root: str | None, n: int, budget_s: float, small: bool) -> dict[str, Any]:
    from study.trial import run_trial

    cfgs = quick_configs(n, small)
    run_trial(cfgs[0], device=device, data_root=data_root)  # warm-up: data cached, kernels loaded
    times, steps, fit = [], [], 0
    start = time.perf_counter()
    for cfg in cfgs:
        if time.perf_counter() - start > budget_s:
            break
        record = run_trial(cfg, device=device, data_root=data_root).record
        times.append(record["time.total_s"])
        steps.append(record.get("train.steps") or 0)
        fit += record["status"] == "ok"
    wall = time.perf_counter() - start
    return {"trials": len(times), "fit": fit, "wall_s": round(wall, 2), "trials_per_hour": round(3600 * len(times) / wall, 1),
            "mean_trial_s": round(sum(times) / len(times), 3), "steps": steps,
            "trial_s": [round(t, 3) for t in times]}


def packed_section(device: str, data_root: str | None, widths: list[int], steps: int, repeats: int) -> dict[str, Any]:
    from study.config import TrialConfig
    from study.data import load_dataset
    from study.models import build_model
    from study.packed import train_packed
    from study.train import train

    rows = []
    base = dict(dataset="fashion_mnist", n_train=1000, n_test=1000, batch_size=64, eval_every=50, depth=3,
                optimizer="adam", lr=0.001, max_steps=steps)  # packing is exact: the same steps either way
    for width in widths:
        cfgs = [TrialConfig(width=width, seed=s, **base) for s in range(8)]
        datas = [load_dataset(c, data_root=data_root, download=False, device=device) for c in cfgs]
        timings: dict[str, list[float]] = {"packed": [], "alone": []}
        for round_ in range(repeats + 1):  # the first round warms up
            for name in ("packed", "alone"):
                models = [build_model(c, d.n_features, d.n_classes, device) for c, d in zip(cfgs, datas)]
                synchronize(device)
                t0 = time.perf_counter()
                if name == "packed":
                    train_packed(models, datas, cfgs)
                else:
                    for m, d, c in zip(models, datas, cfgs):
                        train(m, d, c)
                synchronize(device)
                if round_:
                    timings[name].append(time.perf_counter() - t0)
        packed, alone = sorted(timings["packed"])[len(timings["packed"]) // 2], sorted(timings["alone"])[len(timings["alone"]) // 2]
        rows.append({"width": width, "nets": 8, "steps": steps, "packed_s": round(packed, 3), "alone_s": round(alone, 3),
                     "speedup": round(alone / packed, 2)})
    return {"rows": rows, "goal": "speedup >= 5 up to width 256",
            "met": all(r["speedup"] >= 5 for r in rows if r["width"] <= 256)}


def full_data_config(small: bool):
    from study.config import TrialConfig

    if small:
        return TrialConfig(dataset="fashion_mnist", n_train=2000, n_test=1000, width=64, depth=3, optimizer="adam",
                           lr=0.001, batch_size=128, max_steps=300, eval_every=100, n_trajectories=1,
                           trajectory_points=16)
    return TrialConfig(dataset="fashion_mnist", n_train=60_000, n_test=10_000, width=512, depth=3, optimizer="adam",
                       lr=0.001, batch_size=128, max_steps=150_000, eval_every=1000, n_trajectories=2,
                       trajectory_points=64)


def full_data_section(device: str, data_root: str | None, small: bool) -> dict[str, Any]:
    from study.trial import run_trial

    cfg = full_data_config(small)
    record = run_trial(cfg, device=device, data_root=data_root).record
    keys = ("status", "train.steps", "train.accuracy", "test.accuracy", "gap.accuracy", "time.total_s",
            "time.train_s", "time.measure_s", "measure.jacobian_test")
    return {"config": cfg.canonical(), **{k: record.get(k) for k in keys}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=None, help="folder with Fashion-MNIST's IDX files")
    parser.add_argument("--out", default="gpu_check.json", help="the results file (JSON)")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--small", action="store_true", help="tiny sizes: a dry run of every section on the CPU")
    parser.add_argument("--skip", default="", help="comma-separated sections to leave out")
    parser.add_argument("--processes", type=int, default=4,
                        help="trial processes sharing the device in the fractional sections, as Ray places "
                             "--gpus-per-trial 1/P (default: %(default)s; --small: 2)")
    parser.add_argument("--budget-s", type=float, default=450.0,
                        help="no section starts after this many seconds (the rest are recorded as skipped); "
                             "default: %(default)s, so the run ends well within 8 minutes")
    args = parser.parse_args()
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit(f"gpu_check: --device {args.device} but torch {torch.__version__} sees no CUDA device "
                 "(use --device cpu --small for a dry run)")
    if args.data_root and not os.path.isdir(args.data_root):
        sys.exit(f"gpu_check: --data-root {args.data_root} is not a folder")
    torch.set_num_threads(1 if args.small else max(1, min(4, os.cpu_count() or 1)))
    small, device, root = args.small, args.device, args.data_root
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    shared = 2 if small else args.processes
    results = Results(args.out)
    results.data["command"] = " ".join([os.path.basename(sys.executable), *sys.argv])
    plan: list[tuple[str, Callable[[], dict[str, Any]]]] = [
        ("env", lambda: env_section(device)),
        ("tests", lambda: tests_section(240)),
        ("quick", lambda: quick_section(device, root, 4 if small else 30, 10 if small else 180, small)),
        ("packed", lambda: packed_section(device, root, [16] if small else [16, 64, 128, 256], 20 if small else 300,
                                          1 if small else 3)),
        ("fractional_1", lambda: fractional_section(device, root, 1, quick_configs(2 if small else 24, small),
                                                    False)),
        (f"fractional_{shared}", lambda: fractional_section(device, root, shared,
                                                            quick_configs(4 if small else 48, small), False)),
        (f"fractional_{shared}_pack", lambda: fractional_section(device, root, shared,
                                                                 quick_configs(16 if small else 96, small), True)),
        ("full_data", lambda: full_data_section(device, root, small)),
    ]
    plan.append(("paper_cost", lambda: paper_cost_section(device, results.data["sections"].get("full_data", {}),
                                                          small)))
    began = time.perf_counter()
    for name, run in plan:
        if name in skip:
            continue
        if time.perf_counter() - began > args.budget_s:
            results.data.setdefault("skipped_for_budget", []).append(name)
            print(f"== {name}: not started, past --budget-s {args.budget_s:.0f}", flush=True)
            continue
        results.section(name, run)
    results.data["ended"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    results.write()
    failed = [n for n, s in results.data["sections"].items() if not s["ok"]]
    print(f"gpu_check: {len(results.data['sections'])} sections, {len(failed)} failed {failed or ''}; wrote {args.out}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
