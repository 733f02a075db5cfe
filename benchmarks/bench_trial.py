"""Where a `quick`-preset trial spends its time: data, training, each measure, writing.

A few configs of the `quick` sweep preset (sweeps/presets.py: Fashion-MNIST, 256 training and 1000
test images, batch 64, evaluation every 50 steps, one trajectory per kind, 32 Jacobian points per
trajectory) run end to end with run_trial on 1 thread. The split comes from the trial record
(time.data_s, time.train_s, time.measure_s, time.total_s); each registered measure
(study.measures.MEASURES) is then timed on its own, on the same trained net and data, and writing the
three Parquet tables (TrialResult.write) is timed too. Goal: measures under 15% of the trial.

Three hand-picked configs say where the time goes; they do not say what "a quick trial" costs. So the
second part runs the `quick` sweep's own trials (`sensitivity sweep quick`'s 100, seed 0; with
--sweep-trials K < 100, K of them taken round robin over the nonlinearities in draw order, so the
subset has the sweep's mix) one after another in this process, and sums their records' time
columns, overall and by nonlinearity.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import _common  # noqa: F401  (puts the repository on sys.path)
import torch

from _common import fmt_s, header, table
from study import measures as registry
from study.config import TrialConfig
from study.measures import MeasureContext
from study.trial import run_trial

QUICK_FIXED = {"dataset": "fashion_mnist", "n_train": 256, "n_test": 1000, "batch_size": 64, "eval_every": 50,
               "n_trajectories": 1, "trajectory_points": 32}
TRIALS = [dict(width=256, depth=3, nonlinearity="relu", optimizer="adam", lr=0.002, max_steps=4000),
          dict(width=512, depth=4, nonlinearity="tanh", optimizer="momentum", lr=0.01, max_steps=4000),
          dict(width=128, depth=2, nonlinearity="relu6", optimizer="sgd", lr=0.1, max_steps=4000, random_labels=1.0)]


def quick_fixed() -> dict:
    try:
        from sweeps.presets import QUICK

        return dict(QUICK.fixed)
    except Exception:  # noqa: BLE001 -- the sweep package is optional here: fall back to its values as of writing
        return dict(QUICK_FIXED)


def sweep_split(k: int, threads: int, device: str = "cpu") -> None:
    """Run the quick sweep's first k trials here, one after another; print the sums of their time columns."""
    from sweeps.presets import get_preset
    from sweeps.sampling import parse_overrides, sample

    planned = [p.config for p in sample(get_preset("quick"), parse_overrides([]), seed=0, n=100).trials]
    if k < len(planned):  # round robin over the nonlinearities, in draw order: a subset shaped like the sweep
        by_kind: dict[str, list[TrialConfig]] = {}
        for cfg in planned:
            by_kind.setdefault(cfg.nonlinearity, []).append(cfg)
        queues = list(by_kind.values())
        planned = [q[i] for i in range(max(map(len, queues))) for q in queues if i < len(q)][:k]
    records = [run_trial(cfg, device=device, threads=threads, download=False).record for cfg in planned]
    groups: dict[str, list[dict]] = {}
    for rec in records:
        groups.setdefault(rec["hp.nonlinearity"], []).append(rec)
    rows = []
    for name, recs in sorted(groups.items()) + [(f"all {len(records)}", records)]:
        sums = {key: sum(r.get(f"time.{key}_s") or 0.0 for r in recs) for key in ("data", "train", "measure", "total")}
        shares = sorted((r.get("time.measure_s") or 0.0) / r["time.total_s"] for r in recs)
        rows.append({"nonlinearity": name, "trials": len(recs), "data": fmt_s(sums["data"]),
                     "train": fmt_s(sums["train"]), "measures": fmt_s(sums["measure"]), "total": fmt_s(sums["total"]),
                     "measures share": f"{100 * sums['measure'] / sums['total']:.1f}%",
                     "median trial's share": f"{100 * shares[len(shares) // 2]:.1f}%"})
    what = "all 100 trials" if len(records) == 100 else f"{len(records)} of its 100 trials (round robin over the nonlinearities)"
    print(f"The quick sweep (seed 0): {what}, run one after another in this process:\n")
    print(table(rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--sweep-trials", type=int, default=100, help="how many of the quick sweep's 100 trials to run (0: none)")
    parser.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    args = parser.parse_args()
    header("Trial time split (quick preset)",
           f"python benchmarks/bench_trial.py --threads {args.threads} --sweep-trials {args.sweep_trials} --device {args.device}")
    torch.set_num_threads(args.threads)
    fixed = quick_fixed()
    print("quick preset fixed settings: " + ", ".join(f"{k}={v}" for k, v in fixed.items()) + "\n")
    rows, per_measure = [], []
    sums = {"data": 0.0, "train": 0.0, "measures": 0.0, "write": 0.0, "total": 0.0}
    for settings in TRIALS:
        cfg = TrialConfig(**{**fixed, **settings})
        result = run_trial(cfg, device=args.device, threads=args.threads, download=False)
        rec = result.record
        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()
            result.write(out)
            t_write = time.perf_counter() - start
        label = f"{cfg.width}x{cfg.depth - 1} {cfg.nonlinearity} {cfg.optimizer}" + (" random labels" if cfg.random_labels else "")
        total = rec["time.total_s"] + t_write
        measure_s = rec.get("time.measure_s", 0.0)
        for key, value in (("data", rec["time.data_s"]), ("train", rec.get("time.train_s", 0.0)),
                           ("measures", measure_s), ("write", t_write), ("total", total)):
            sums[key] += value
        rows.append({"trial": label, "status": rec["status"], "steps": rec.get("train.steps"),
                     "data": fmt_s(rec["time.data_s"]), "train": fmt_s(rec["time.train_s"]),
                     "measures": fmt_s(measure_s), "write": fmt_s(t_write), "total": fmt_s(total),
                     "measures share": f"{100 * measure_s / total:.1f}%",
                 "share, data cached": f"{100 * measure_s / (total - rec['time.data_s']):.1f}%"})
        if result.model is not None and rec["status"] != "diverged":
            from study.data import load_dataset

            device = torch.device(args.device)
            ctx = MeasureContext(cfg=cfg, model=result.model, data=load_dataset(cfg, device=device, download=False),
                                 device=device)
            row = {"trial": label}
            for name, fn in registry.MEASURES.items():
                start = time.perf_counter()
                fn(ctx)
                elapsed = time.perf_counter() - start
                row[name] = f"{fmt_s(elapsed)} ({100 * elapsed / total:.1f}%)"
            per_measure.append(row)
    rows.append({"trial": "all three", "status": "", "steps": "", "data": fmt_s(sums["data"]), "train": fmt_s(sums["train"]),
                 "measures": fmt_s(sums["measures"]), "write": fmt_s(sums["write"]), "total": fmt_s(sums["total"]),
                 "measures share": f"{100 * sums['measures'] / sums['total']:.1f}%",
                 "share, data cached": f"{100 * sums['measures'] / (sums['total'] - sums['data']):.1f}%"})
    print(table(rows))
    print("The first trial's data time includes reading Fashion-MNIST from disk (cached per process after);\n"
          "'share, data cached' leaves the data time out, as for every later trial of a sweep worker.\n")
    print("Each measure alone, on the trained net (share of the trial's total):\n")
    print(table(per_measure))
    if args.sweep_trials > 0:
        sweep_split(args.sweep_trials, args.threads, args.device)


if __name__ == "__main__":
    main()
