"""Exact transition counting vs dense sampling at the resolution that reaches the same count.

For a ReLU net and the ellipse through three Fashion-MNIST training points, the exact count
(study.measures.transition_count.count_transitions_ellipse: kink crossings found in closed form) is compared
with counting activation-pattern changes between P equally spaced points of the ellipse
(study.measures.transition_count.pattern_changes, float64), doubling P from 1024 until the sampled count
equals the exact one. Sampling only undercounts (two crossings between neighbouring samples merge),
so the first P that matches is the resolution a sampling study would have needed, and its time is
what it would have paid. P stops doubling when one pass would exceed the sampling budget; the table
then says how far the count got.

Nets: 64x3 and 512x9 ReLU (hidden width x hidden layers), at initialization and after a short
training (Adam, Fashion-MNIST, 1000 training points). 1 thread.

Smooth nets (tanh 64x3 and 512x3, trained the same way) have no exact count: ours sums each unit's
sign changes over samples, doubling until two doublings agree (count_transitions_ellipse's sampled
method). The reference is again whole-pattern sampling, doubled until it reaches our count.
"""

from __future__ import annotations

import argparse
import math
import time

import _common  # noqa: F401  (puts the repository on sys.path)
import torch

from _common import fmt_s, header, table
from study.config import TrialConfig
from study.data import load_dataset
from study.models import build_model
from study.train import train

NETS = {"64x3": dict(width=64, depth=4), "512x9": dict(width=512, depth=10)}
SMOOTH_NETS = {"64x3 tanh": dict(width=64, depth=4, nonlinearity="tanh"),
               "512x3 tanh": dict(width=512, depth=4, nonlinearity="tanh")}


def sampled_count(model, c, u, v, n: int, chunk: int = 8192) -> int:
    """Pattern changes between consecutive points of x(2 pi i / n), i = 0..n-1, closed; chunked so memory
    stays at `chunk` points (neighbouring chunks share their boundary point)."""
    from study.measures.transition_count import pattern_changes

    total = 0
    for lo in range(0, n, chunk):
        idx = torch.arange(lo, min(n, lo + chunk) + 1, dtype=torch.float64, device=c.device) % n  # one past: the pair across chunks
        theta = (2 * math.pi / n) * idx[:, None]
        total += pattern_changes(model, c + u * theta.cos() + v * theta.sin(), closed=False)
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train-steps", type=int, default=300, help="Adam steps for the trained nets")
    parser.add_argument("--budget", type=float, default=25.0, help="seconds one sampling pass may take")
    parser.add_argument("--max-samples", type=int, default=2 ** 20)
    parser.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N (float64 on the device)")
    args = parser.parse_args()
    header("Transitions: exact (or per-unit) counting vs dense pattern sampling",
           f"python benchmarks/bench_transitions.py --train-steps {args.train_steps} --budget {args.budget:g} "
           f"--max-samples {args.max_samples} --device {args.device}")
    torch.set_num_threads(1)
    device = torch.device(args.device)
    from study.measures.transition_count import count_transitions_ellipse, ellipse_through

    base = TrialConfig(dataset="fashion_mnist", n_train=1000, n_test=100, max_steps=args.train_steps,
                       eval_every=100, lr=0.001)
    data = load_dataset(base, device=device, download=False)
    c, u, v = ellipse_through(*data.x_train[:3].double())
    rows = []
    for name, shape in {**NETS, **SMOOTH_NETS}.items():
        for state in ("init", "trained") if name in NETS else ("trained",):
            cfg = base.replace(**shape)
            model = build_model(cfg, data.n_features, data.n_classes, device)
            if state == "trained":
                outcome = train(model, data, cfg)
                state = f"trained {outcome.steps} steps (acc {outcome.train_accuracy:.2f})"
            model.eval()
            start = time.perf_counter()
            ours = count_transitions_ellipse(model, c, u, v)
            t_ours = time.perf_counter() - start
            samples, count, t_sample, last = 1024, None, 0.0, 0.0
            while True:
                start = time.perf_counter()
                count = sampled_count(model, c, u, v, samples)
                last = time.perf_counter() - start
                t_sample += last
                if count >= ours.transitions or samples * 2 > args.max_samples or last * 2 > args.budget:
                    break
                samples *= 2
            reached = count >= ours.transitions
            how = "exact" if ours.method == "exact" else f"per unit, m={ours.resolution}" + ("" if ours.converged else " (cap)")
            rows.append({"net": name, "state": state, "ours": how, "our count": ours.transitions, "our time": fmt_s(t_ours),
                         "P (sampled)": f"{samples:,}" + ("" if reached else " (stopped)"),
                         "sampled count": count, "time at P": fmt_s(last),
                         "time, all doublings": fmt_s(t_sample),
                         "sampling / ours (at P)": f"{last / t_ours:.1f}x" + ("" if reached else " (lower bound)")})
    print(table(rows))
    print("'(stopped)': the next doubling would exceed the budget or --max-samples; the sampled count is still\n"
          "short of ours, so the time a matching P needs is larger than shown (a lower bound).")


if __name__ == "__main__":
    main()
