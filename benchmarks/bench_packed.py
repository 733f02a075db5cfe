"""Packed training: S nets trained together (study.packed.train_packed) vs one after another (study.train.train).

S = 8 nets of one architecture, Fashion-MNIST with the `quick` preset's data settings (1000 training
points, batch 64), 1 CPU thread (or `--device cuda`), widths 16, 64 and 256 (2 hidden layers). Both sides do exactly the same
work: packing is exact, so every net takes the same steps and stops at the same step either way.
Packs:
- "8 lrs, one seed": the nets share the minibatch sequence, so the first layer is one wide matmul;
- "8 seeds": every net has its own data subset and minibatch order (a gather per net).
Repetitions interleave packed and sequential runs; medians. The last table runs whole trials
(run_packed vs run_trial, measures included, which are not packed) for the smallest width.
"""

from __future__ import annotations

import argparse

import _common  # noqa: F401  (puts the repository on sys.path)
import torch

from _common import fmt_s, header, interleaved, median, synced, table
from study.config import TrialConfig
from study.data import load_dataset
from study.models import build_model
from study.packed import run_packed, train_packed
from study.train import train
from study.trial import run_trial

BASE = dict(dataset="fashion_mnist", n_train=1000, n_test=1000, batch_size=64, eval_every=50, depth=3)
PACKS = {
    "adam, 8 lrs, one seed": lambda w, steps: [TrialConfig(width=w, optimizer="adam", lr=0.0005 * (1 + 0.25 * i),
                                                           max_steps=steps, **BASE) for i in range(8)],
    "adam, 8 seeds": lambda w, steps: [TrialConfig(width=w, optimizer="adam", lr=0.001, seed=i, max_steps=steps, **BASE)
                                       for i in range(8)],
    "sgd, 8 lrs, one seed": lambda w, steps: [TrialConfig(width=w, optimizer="sgd", lr=0.02 * (1 + 0.25 * i),
                                                          max_steps=steps, **BASE) for i in range(8)],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[16, 64, 256])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    args = parser.parse_args()
    device = torch.device(args.device)
    header("Packed training: 8 nets at once vs one after another (1 thread)",
           f"python benchmarks/bench_packed.py --widths {' '.join(map(str, args.widths))} --steps {args.steps} "
           f"--repeats {args.repeats} --device {args.device}")
    torch.set_num_threads(1)
    rows = []
    for width in args.widths:
        for pack_name, make in PACKS.items():
            cfgs = make(width, args.steps)
            datas = [load_dataset(c, download=False, device=device) for c in cfgs]
            steps = {}

            def packed() -> None:
                models = [build_model(c, d.n_features, d.n_classes, device) for c, d in zip(cfgs, datas)]
                steps["packed"] = [o.steps for o in train_packed(models, datas, cfgs)]

            def sequential() -> None:
                models = [build_model(c, d.n_features, d.n_classes, device) for c, d in zip(cfgs, datas)]
                steps["alone"] = [train(m, d, c).steps for m, d, c in zip(models, datas, cfgs)]

            times = interleaved({"packed": synced(packed, device), "sequential": synced(sequential, device)},
                                repeats=args.repeats)
            t_packed, t_seq = median(times["packed"]), median(times["sequential"])
            assert steps["packed"] == steps["alone"], (steps["packed"], steps["alone"])
            rows.append({"width": width, "pack": pack_name, "net-steps": sum(steps["alone"]),
                         "sequential": fmt_s(t_seq), "packed": fmt_s(t_packed), "speedup": f"{t_seq / t_packed:.2f}x",
                         "spread (min-max speedup)": f"{min(times['sequential']) / max(times['packed']):.2f}-"
                                                     f"{max(times['sequential']) / min(times['packed']):.2f}x"})
    print(table(rows))
    width = min(args.widths)
    cfgs = PACKS["adam, 8 lrs, one seed"](width, 4000)
    cfgs = [c.replace(n_trajectories=1, trajectory_points=32) for c in cfgs]
    times = interleaved({"run_packed": lambda: run_packed(cfgs, device=device, download=False),
                         "run_trial x8": lambda: [run_trial(c, device=device, download=False) for c in cfgs]},
                        repeats=1, warmup=0)
    t_p, t_s = times["run_packed"][0], times["run_trial x8"][0]
    print(f"Whole trials, width {width}, adam, 8 lrs, one seed, up to 4000 steps to 100% train accuracy, "
          "measures included (not packed):\n")
    print(table([{"run_trial x8": fmt_s(t_s), "run_packed": fmt_s(t_p), "speedup": f"{t_s / t_p:.2f}x"}]))


if __name__ == "__main__":
    main()
