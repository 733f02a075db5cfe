"""benchmarks/gpu_check.py's fractional sections: trial processes sharing one device as Ray places trials with
--gpus-per-trial 1/P (no Ray needed), the device's utilization sampled while they run."""

from __future__ import annotations

import multiprocessing as mp
import os
import subprocess
import threading
import time
from typing import Any

import _common  # noqa: F401  (puts the repository on sys.path, in spawned children too)


def _fraction_worker(queue, answers, go, device: str, data_root: str | None, warm) -> None:
    """One of P processes sharing the card: warmed up (imports, CUDA context, the data set: what a sweep's
    reused actor pays once), then trials (or packs) from the queue until it is empty."""
    import torch

    from study.packed import run_packed
    from study.trial import run_trial

    torch.set_num_threads(1)
    run_trial(warm, device=device, data_root=data_root)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    answers.put("ready")
    go.wait()
    done, nets = 0, 0
    while True:
        job = queue.get()
        if job is None:
            break
        if len(job) == 1:
            run_trial(job[0], device=device, data_root=data_root)
        else:
            run_packed(job, device=device, data_root=data_root)
        done += 1
        nets += len(job)
    peak = torch.cuda.max_memory_allocated() if device.startswith("cuda") else 0
    answers.put({"pid": os.getpid(), "jobs": done, "nets": nets, "peak_memory_mib": round(peak / 2 ** 20, 1)})


def _answer(answers, workers) -> Any:
    """The next answer of a worker; RuntimeError as soon as one died without answering (never a hang)."""
    import queue as queues

    while True:
        try:
            return answers.get(timeout=1.0)
        except queues.Empty:
            dead = [w for w in workers if w.exitcode not in (None, 0)]
            if dead:
                raise RuntimeError(f"{len(dead)} of {len(workers)} trial processes died (exit codes "
                                   f"{[w.exitcode for w in dead]}); their traceback is above") from None


class Sampler:
    """The card's utilization and memory every `every` s (NVML, else nvidia-smi; nothing on the CPU)."""

    def __init__(self, device: str, every: float = 0.5):
        self.device, self.every, self.samples, self.stop = device, every, [], threading.Event()
        self.read = self._reader() if device.startswith("cuda") else None
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _reader(self):
        try:
            import pynvml

            pynvml.nvmlInit()
            handle = pynvml.nvmlDeviceGetHandleByIndex(0)
            return lambda: (pynvml.nvmlDeviceGetUtilizationRates(handle).gpu,
                            pynvml.nvmlDeviceGetMemoryInfo(handle).used / 2 ** 20)
        except Exception:
            def smi():
                out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu,memory.used",
                                      "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=5)
                util, used = out.stdout.strip().splitlines()[0].split(",")
                return float(util), float(used)
            return smi

    def _loop(self) -> None:
        while not self.stop.wait(self.every):
            try:
                self.samples.append(self.read())
            except Exception:
                pass

    def __enter__(self):
        if self.read is not None:
            self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        if self.read is not None:
            self.thread.join()

    def summary(self) -> dict[str, Any]:
        if not self.samples:
            return {"utilization_samples": 0}
        util = sorted(s[0] for s in self.samples)
        return {"utilization_samples": len(util), "utilization_mean": round(sum(util) / len(util), 1),
                "utilization_median": util[len(util) // 2], "utilization_idle_fraction": round(sum(u < 5 for u in util) / len(util), 3),
                "card_memory_used_max_mib": round(max(s[1] for s in self.samples), 1)}


def fractional_section(device: str, data_root: str | None, processes: int, cfgs: list, pack: bool) -> dict[str, Any]:
    """P processes on one card, `cfgs` (or packs of 8 seeds of each of the first len(cfgs) / 8) from one queue."""
    n = len(cfgs)
    jobs = [[c.replace(seed=c.seed + s) for s in range(8)] for c in cfgs[:max(1, n // 8)]] if pack else [[c] for c in cfgs]
    context = mp.get_context("spawn")  # CUDA in forked children is not allowed
    queue, answers, go = context.Queue(), context.Queue(), context.Event()
    for job in jobs:
        queue.put(job)
    for _ in range(processes):
        queue.put(None)
    warm = cfgs[0].replace(max_steps=10)
    workers = [context.Process(target=_fraction_worker, args=(queue, answers, go, device, data_root, warm))
               for _ in range(processes)]
    for w in workers:
        w.start()
    try:
        assert all(_answer(answers, workers) == "ready" for _ in workers)
        start = time.perf_counter()
        with Sampler(device) as sampler:
            go.set()
            found = [_answer(answers, workers) for _ in workers]
    finally:
        for w in workers:
            w.join(timeout=60)
            if w.is_alive():
                w.terminate()
    wall = time.perf_counter() - start
    nets = sum(f["nets"] for f in found)
    return {"processes": processes, "pack": 8 if pack else 1, "jobs": len(jobs), "nets": nets, "wall_s": round(wall, 2),
            "nets_per_hour": round(3600 * nets / wall, 1), "workers": found, **sampler.summary(),
            "note": "timed from when every process had warmed up (imports, CUDA context, data: a sweep's actors "
                    "pay that once)"}
