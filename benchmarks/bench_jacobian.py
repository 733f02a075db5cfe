"""Jacobian norms of 1000 points: ours (study.measures.jacobian.jacobian_norms) vs two autograd references.

- per-point: torch.autograd.functional.jacobian of softmax(h(x)) at one point at a time, then its
  Frobenius norm (the way one would write the measure without batching). It is slow, so it is timed
  on the first `--subset` points and scaled linearly to all points (each point costs the same).
- vmap(jacrev): torch.func.vmap(torch.func.jacrev(softmax o h)) over all points at once: it
  materializes the full [N, C, d] Jacobian.
Ours builds the Jacobian by batched reverse mode as explicit matrix products and, when the first
layer is narrower than the input, never forms [N, C, d] (the Gram trick in its docstring); it also
returns the logit-Jacobian norm and the correct-class row's norm, which the references do not.

Nets: 784-256x3 (4 weight layers: 784-256-256-256-10) and a deep narrow 784-32x8 (9 weight layers),
ReLU, default init, on Fashion-MNIST test points (synthetic 784-dimensional points when Fashion-MNIST
is absent). Timed with 1 thread and with all cores; repetitions interleaved, medians reported.

Memory: each method runs once in a fresh subprocess (1 thread); the peak is the larger of (a) the
growth of the process's high-water mark (ru_maxrss) across the call and (b) the peak of its resident
set sampled every millisecond by a thread (psutil) minus the RSS just before the call. Tensor-level
tracing (tracemalloc) would miss torch's allocations, which are not Python objects.

`--device cuda`: the same methods with the net and points on the GPU, synchronized before each timing
(one row per net: threads do not apply), and memory as torch.cuda.max_memory_allocated's growth.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time

import _common  # noqa: F401  (puts the repository on sys.path)
import psutil
import torch

from _common import fmt_s, header, interleaved, median, peak_rss_mib, synced, table
from study.config import TrialConfig
from study.measures.jacobian import jacobian_norms
from study.models import build_model

NETS = {"784-256x3": dict(width=256, depth=4), "784-32x8": dict(width=32, depth=9)}


def points(n: int) -> tuple[torch.Tensor, torch.Tensor, str]:
    from study.data import load_dataset
    from study.raw_data import DataNotFoundError

    try:
        data = load_dataset(TrialConfig(dataset="fashion_mnist", n_train=n, n_test=n), download=False)
        return data.x_test, data.y_test, "Fashion-MNIST test points"
    except DataNotFoundError:
        gen = torch.Generator().manual_seed(0)
        return torch.randn(n, 784, generator=gen), torch.randint(0, 10, (n,), generator=gen), "synthetic N(0, I) points"


def make_net(name: str):
    return build_model(TrialConfig(dataset="fashion_mnist", nonlinearity="relu", **NETS[name]), 784, 10).eval()


def cuda_peak_mib(method: str, net: str, n: int, device: torch.device) -> float:
    """Growth of the GPU allocator's peak over one call of the method."""
    x, y, _ = points(n)
    x, y, model = x.to(device), y.to(device), make_net(net).to(device)
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    with torch.no_grad() if method == "ours" else torch.enable_grad():
        METHODS[method](model, x, y)
    torch.cuda.synchronize(device)
    return (torch.cuda.max_memory_allocated(device) - before) / 2 ** 20


def ours(model, x, y) -> torch.Tensor:
    return jacobian_norms(model, x, y).jacobian


def per_point(model, x, y) -> torch.Tensor:
    f = lambda v: torch.softmax(model(v[None]), dim=1)[0]  # noqa: E731
    return torch.stack([torch.autograd.functional.jacobian(f, x[i]).norm() for i in range(x.shape[0])])


def vmap_jacrev(model, x, y) -> torch.Tensor:
    params = {k: v.detach() for k, v in model.named_parameters()}
    f = lambda v: torch.softmax(torch.func.functional_call(model, params, (v[None],)), dim=1)[0]  # noqa: E731
    return torch.func.vmap(torch.func.jacrev(f))(x).flatten(1).norm(dim=1)


METHODS = {"ours": ours, "per-point": per_point, "vmap(jacrev)": vmap_jacrev}


def memory_probe(method: str, net: str, n: int) -> dict:
    """Run one method once in this (fresh) process; its peak extra memory in MiB."""
    torch.set_num_threads(1)
    x, y, _ = points(n)
    model = make_net(net)
    proc = psutil.Process()
    before_rss = proc.memory_info().rss / 2 ** 20
    before_hwm = peak_rss_mib()
    peak = [before_rss]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss / 2 ** 20)
            time.sleep(0.001)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    with torch.no_grad() if method == "ours" else torch.enable_grad():
        METHODS[method](model, x, y)
    done.set()
    sampler.join()
    return {"peak_mib": max(peak_rss_mib() - before_hwm, peak[0] - before_rss)}


def measure_memory(method: str, net: str, n: int) -> float:
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--memory-probe", method, net, str(n)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_mib"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--points", type=int, default=1000)
    parser.add_argument("--subset", type=int, default=200, help="points on which the per-point reference is timed")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    parser.add_argument("--memory-probe", nargs=3, metavar=("METHOD", "NET", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.memory_probe:
        method, net, n = args.memory_probe
        print(json.dumps(memory_probe(method, net, int(n))))
        return
    header("Jacobian norms: ours vs per-point autograd vs vmap(jacrev)",
           f"python benchmarks/bench_jacobian.py --points {args.points} --subset {args.subset} --repeats {args.repeats}"
           f" --device {args.device}")
    x, y, source = points(args.points)
    x, y = x.to(device), y.to(device)
    subset = min(args.subset, args.points)
    print(f"{args.points} {source}; per-point reference timed on {subset} points and scaled x{args.points / subset:g}\n")
    rows, agreement = [], []
    for threads in sorted({1, os.cpu_count() or 1}) if device.type == "cpu" else ["-"]:
        if device.type == "cpu":
            torch.set_num_threads(threads)
        for net in NETS:
            model = make_net(net).to(device)
            with torch.no_grad():
                ref = ours(model, x, y)
            rel = lambda other, k: float(((other - ref[:k]).abs() / ref[:k]).max())  # noqa: E731
            agreement.append({"net": net, "threads": threads,
                              "max rel. diff vs per-point": f"{rel(per_point(model, x[:50], y[:50]), 50):.1e}",
                              "max rel. diff vs vmap(jacrev)": f"{rel(vmap_jacrev(model, x, y), len(x)):.1e}"})
            times = interleaved({"ours": synced(lambda: ours(model, x, y), device),
                                 "vmap": synced(lambda: vmap_jacrev(model, x, y), device),
                                 "per-point": synced(lambda: per_point(model, x[:subset], y[:subset]), device)},
                                repeats=args.repeats)
            t_ours, t_vmap = median(times["ours"]), median(times["vmap"])
            scale = args.points / subset
            t_point = median(times["per-point"]) * scale
            best = {k: min(v) for k, v in times.items()}
            rows.append({"net": net, "threads": threads, "ours": fmt_s(t_ours), "vmap(jacrev)": fmt_s(t_vmap),
                         f"per-point (x{scale:g})": fmt_s(t_point),
                         "speedup vs per-point": f"{t_point / t_ours:.0f}x", "speedup vs vmap": f"{t_vmap / t_ours:.1f}x",
                         "best-of: vs per-point, vs vmap": f"{best['per-point'] * scale / best['ours']:.0f}x, "
                                                            f"{best['vmap'] / best['ours']:.1f}x"})
    print(table(rows))
    print("Medians of interleaved repetitions; 'best-of' divides the fastest runs (on a shared machine,\n"
          "interference only adds time). Multi-threaded rows suffer most when other work holds a core.\n")
    print("Agreement (softmax-Jacobian Frobenius norm; per-point on the first 50 points):\n")
    print(table(agreement))
    memory = []
    for net in NETS:
        row = {"net": net}
        for method in METHODS:
            peak = measure_memory(method, net, args.points) if device.type == "cpu" else \
                cuda_peak_mib(method, net, args.points, device)
            row[f"{method} peak MiB"] = f"{peak:.0f}"
        memory.append(row)
    print(f"Peak extra memory of one call on {args.points} points, 1 thread, fresh process "
          "(max of ru_maxrss growth and 1 ms-sampled RSS peak):\n" if device.type == "cpu" else
          f"Peak extra GPU memory of one call on {args.points} points (torch.cuda.max_memory_allocated growth):\n")
    print(table(memory))


if __name__ == "__main__":
    main()
