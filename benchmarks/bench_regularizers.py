"""Training-step cost of each regularizer, as a ratio to a plain step measured in the same run.

    python benchmarks/bench_regularizers.py            # 1 thread and all threads, CPU
    python benchmarks/bench_regularizers.py --threads 1 --steps 10 --repeats 3   # quicker

A 784-256-256-256-10 ReLU MLP (three hidden layers of 256), batch 128, Adam, random data. Each
setting trains `--steps` steps with study.train.train (the real loop, hooks included; one accuracy
check on the 256 training points at the end); the settings run round-robin `--repeats` times. For each
setting the table shows the fastest round's wall-clock milliseconds per step, its ratio to the fastest
plain step ("none") of the same run, and the same ratio in CPU time (process time: all threads' work,
which other jobs on a shared machine disturb much less than wall time). Minima, not means: on a
shared machine interference only ever adds time. The teacher of jacobian_matching is trained before
the timed runs (it is not part of a step).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from study.config import TrialConfig  # noqa: E402
from study.data import Dataset  # noqa: E402
from study.models import build_model  # noqa: E402
from study.regularizers import make_penalty  # noqa: E402
from study.train import train  # noqa: E402

N_IN, WIDTH, DEPTH, N_OUT, BATCH, N_TRAIN = 784, 256, 4, 10, 128, 256

SETTINGS = [  # (label, config changes)
    ("none (plain step)", {}),
    ("jacobian exact, logits", dict(regularizer="jacobian", reg_strength=0.01)),
    ("jacobian exact, softmax", dict(regularizer="jacobian", reg_strength=0.01, reg_target="softmax")),
    ("jacobian_proj K=1, logits", dict(regularizer="jacobian_proj", reg_strength=0.01)),
    ("jacobian_proj K=1, softmax", dict(regularizer="jacobian_proj", reg_strength=0.01, reg_target="softmax")),
    ("jacobian_proj K=3, logits", dict(regularizer="jacobian_proj", reg_strength=0.01, reg_projections=3)),
    ("bias_jacobian", dict(regularizer="bias_jacobian", reg_strength=0.01)),
    ("input_noise", dict(regularizer="input_noise", noise_std=0.1)),
    ("jacobian_matching (exact)", dict(regularizer="jacobian_matching", reg_strength=0.01, noise_std=0.1)),
]


def random_data(device: torch.device) -> Dataset:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(N_TRAIN, N_IN, generator=gen)
    y = torch.randint(0, N_OUT, (N_TRAIN,), generator=gen)
    return Dataset(name="synthetic", x_train=x, y_train=y, x_test=x[:1], y_test=y[:1], y_train_true=y,
                   image_shape=(1, 1, N_IN), n_classes=N_OUT, train_index=np.arange(N_TRAIN),
                   test_index=np.arange(1)).to(device)


def seconds_per_step(cfg: TrialConfig, data: Dataset, penalty, device: torch.device) -> tuple[float, float]:
    """(wall seconds, CPU seconds) per training step."""
    model = build_model(cfg, N_IN, N_OUT, device)
    if penalty is not None and hasattr(penalty, "prepare"):
        penalty.prepare(model, data)  # done once here, so that train's own call finds it prepared
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    cpu = time.process_time()
    outcome = train(model, data, cfg, penalty=penalty)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    cpu = time.process_time() - cpu
    assert outcome.steps == cfg.max_steps, outcome
    return outcome.seconds / outcome.steps, cpu / outcome.steps


def run(threads: int, steps: int, repeats: int, device: torch.device) -> list[tuple[str, float, float, float]]:
    """(label, fastest wall s/step, wall ratio to plain, CPU-time ratio to plain) per setting."""
    torch.set_num_threads(threads)
    data = random_data(device)
    base = TrialConfig(dataset="synthetic", synthetic_dim=N_IN, n_train=N_TRAIN, width=WIDTH, depth=DEPTH,
                       batch_size=BATCH, max_steps=steps, eval_every=steps, target_accuracy=1.0)
    configs = [(label, base.replace(**changes)) for label, changes in SETTINGS]
    penalties = {label: make_penalty(cfg) for label, cfg in configs}
    for label, cfg in configs:  # warm-up (and the jacobian_matching teacher, trained once)
        seconds_per_step(cfg.replace(max_steps=2, eval_every=2), data, penalties[label], device)
    wall: dict[str, float] = {label: float("inf") for label, _ in configs}
    cpu: dict[str, float] = dict(wall)
    for _ in range(repeats):
        for label, cfg in configs:
            w, c = seconds_per_step(cfg, data, penalties[label], device)
            wall[label], cpu[label] = min(wall[label], w), min(cpu[label], c)
    plain = configs[0][0]
    return [(label, wall[label], wall[label] / wall[plain], cpu[label] / cpu[plain]) for label, _ in configs]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="*", default=None,
                        help="torch thread counts to run (default: 1 and all of os.cpu_count())")
    parser.add_argument("--steps", type=int, default=30, help="training steps per timed run")
    parser.add_argument("--repeats", type=int, default=5, help="round-robin rounds (the fastest is kept)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    threads = args.threads or sorted({1, os.cpu_count() or 1})
    print(f"{N_IN}-{WIDTH}x{DEPTH - 1}-{N_OUT} ReLU MLP, batch {BATCH}, Adam, {args.steps} steps x "
          f"{args.repeats} rounds, device {device}, torch {torch.__version__}")
    results = {n: run(n, args.steps, args.repeats, device) for n in threads}
    header = f"{'regularizer':28s}" + "".join(f" | {f'{n} thread' + ('s' if n > 1 else ''):>27s}" for n in threads)
    print(header)
    print(f"{'':28s}" + "".join(f" | {'ms/step':>7s} {'wall ratio':>10s} {'cpu ratio':>9s}" for _ in threads))
    print("-" * len(header))
    for i, (label, _) in enumerate(SETTINGS):
        cells = "".join(f" | {results[n][i][1] * 1e3:7.2f} {results[n][i][2]:9.2f}x {results[n][i][3]:8.2f}x"
                        for n in threads)
        print(f"{label:28s}{cells}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
