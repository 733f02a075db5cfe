"""Device selection, a memory estimate that refuses configs that would not fit, and giving memory back.

`estimate_bytes(cfg)` bounds the peak resident memory a trial adds to its process (above the process
after its imports and the cached data set), term by term from what the code allocates: training
(parameters, optimizer state, L-BFGS history, activations, each regularizer's graph, the
jacobian_matching teacher) and the measures (Jacobian chunks, transition counts). It is checked against
measured trials by tests/test_resources.py and benchmarks/bench_memory.py (`measure_trial_memory`).
`release_memory()` is what a long-lived worker calls after each trial.
"""

from __future__ import annotations

import ctypes
import gc
import json
import os
import subprocess
import sys
import threading
import time

import psutil
import torch

from study.config import ConfigError, TrialConfig, step_points
from study.datasets import IMAGE_SHAPES, N_CLASSES
from study.measures import transition_sampled as ts
from study.models import count_parameters
from study.nonlinearities import KINKS

GIB = 1024 ** 3
LBFGS_HISTORY = 100  # history_size of study.train.make_optimizer


MALLOC_ENV = "SENSITIVITY_MALLOC"  # "default": leave glibc's allocator as it is
MMAP_THRESHOLD, TRIM_THRESHOLD = 4 * 2 ** 20, 64 * 2 ** 20


def configure_malloc() -> bool:
    """Fix glibc's mmap threshold at 4 MiB (and the trim threshold at 64 MiB), so that every block of 4 MiB
    or more is its own mapping, returned to the OS when freed. By default glibc raises the threshold to
    the largest block freed so far (up to 32 MiB), and from then on serves those blocks from the heap,
    where the small long-lived objects allocated between them pin the holes they leave: a 128x2 net with
    the Jacobian penalty under L-BFGS grew by a [C, n, d] block (31 MiB) per step, 1.1 GiB after 30 steps
    where 0.2 GiB were live. Changes no number. Done on import of this module (study.trial imports it);
    SENSITIVITY_MALLOC=default leaves the allocator alone. False without glibc."""
    if os.environ.get(MALLOC_ENV) == "default":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(-3, MMAP_THRESHOLD) and mallopt(-1, TRIM_THRESHOLD))  # M_MMAP_THRESHOLD, M_TRIM_THRESHOLD


configure_malloc()


class ResourceError(ConfigError):
    """A config whose estimated memory exceeds what the device has."""


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' -> the first CUDA device if there is one, else the CPU; otherwise torch.device(name)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} asked for, but torch sees no CUDA device here; use --device cpu")
    return device


def n_features(cfg: TrialConfig) -> int:
    """Input dimension d of the config's data set."""
    if cfg.dataset == "synthetic":
        return cfg.synthetic_dim
    c, h, w = IMAGE_SHAPES[cfg.dataset]
    return c * h * w


def _training_terms(cfg: TrialConfig, d: int, c: int, n: int, params: int) -> dict[str, int]:
    """Floats (4 bytes) that training holds at its peak, by term (see estimate_terms)."""
    w, hidden, lbfgs = cfg.width, cfg.width * (cfg.depth - 1), cfg.optimizer == "lbfgs"
    state = {"sgd": 0, "momentum": 1, "adam": 2, "rmsprop": 1, "lbfgs": 0}[cfg.optimizer]
    terms = {"parameters": params * (2 + state + (10 if lbfgs else 2)),
             "lbfgs_history": 2 * min(LBFGS_HISTORY, cfg.max_steps) * params if lbfgs else 0,
             "activations": n * (3 * hidden + 2 * w + 2 * d + 6 * c)}
    reg, k = cfg.regularizer, (c if cfg.regularizer in ("jacobian", "jacobian_matching") else cfg.reg_projections)
    if reg in ("jacobian", "jacobian_proj", "jacobian_matching"):  # k vector-Jacobian products, double backward
        terms["regularizer"] = k * n * (2 * hidden + 4 * d) + (n * k * c if reg == "jacobian_proj" else 0)
    elif reg == "bias_jacobian":  # its own forward, one backward to the pre-activations with create_graph
        terms["regularizer"] = n * (16 * hidden + 8 * c + 2 * d)
    elif reg == "input_noise":  # the noise and the perturbed batch
        terms["regularizer"] = 3 * n * d
    if reg == "jacobian_matching":  # the teacher's parameters, its batched Jacobian and the difference
        terms["teacher"] = 2 * params + n * (c * (2 * w + 3 * d) + hidden)
    return terms


def _measure_terms(cfg: TrialConfig, d: int, c: int, chunk_size: int) -> dict[str, int]:
    """Bytes the measures hold at their peak: the Jacobian chunk and the transition count."""
    w, hidden = cfg.width, cfg.width * (cfg.depth - 1)
    chunk = min(chunk_size, max(cfg.n_train, cfg.n_test))
    jac = chunk * (hidden + 2 * w + 3 * c * w) + (3 * chunk * c * d if w >= d else w * w)
    if KINKS[cfg.nonlinearity] is not None:  # exact walk: [1024, 3, width] float64 blocks at every depth
        kinks = len(KINKS[cfg.nonlinearity])
        walk = 8 * 1024 * w * (cfg.depth - 1) * (12 + 2 * kinks)
    else:  # sampled: the kept unit signs (1 byte a unit; at most 2 REUSE_BYTES), float64 chunks of points
        points = max(1, min(ts.SAMPLE_CHUNK, ts.SIGN_BYTES // hidden))
        keep = min(4 * cfg.transition_samples * hidden, 2 * ts.REUSE_BYTES)
        walk = keep + points * (3 * hidden + 8 * 3 * w)
    return {"measure_jacobian": 4 * jac, "measure_transitions": walk + 16 * (d * w + w * w)}


def estimate_terms(cfg: TrialConfig, chunk_size: int = 1024) -> dict[str, int]:
    """The terms of estimate_bytes, in bytes. With P parameters, d inputs, C classes, width w, H = w (depth - 1)
    hidden units, n points per training batch (n_train with L-BFGS or full batch), float32 unless said:

        overhead        32 MiB                                           Python and torch objects of a trial
        data            2 (n_train + n_test) d                           the trial's split, standardized
        parameters      P (2 + optimizer state + temporaries)            adam 2, momentum/rmsprop 1; the step's
                                                                         temporaries 2, L-BFGS's flat copies 10
        lbfgs_history   2 min(100, max_steps) P                          the (s, y) pairs
        activations     n (3 H + 2 w + 2 d + 6 C)                        forward and backward
        regularizer     jacobian, jacobian_matching: C n (2 H + 4 d); jacobian_proj: K n (2 H + 4 d + C) for
                        K projections (the cotangents' backward, kept for the double backward);
                        bias_jacobian: n (16 H + 8 C + 2 d); input_noise: 3 n d
        teacher         2 P + n (C (2 w + 3 d) + H)                      jacobian_matching's teacher Jacobian
        measures        the larger of the Jacobian chunk (chunk = min(1024, max(n_train, n_test)) points:
                        H + 2 w + 3 C w floats a point, + 3 C d if w >= d, else w^2) and the transition
                        count (exact: 8 bytes x 1024 x w x (depth - 1) x (12 + 2 kinks); smooth nets, sampled:
                        min(4 H transition_samples, 2 REUSE_BYTES) kept signs and a chunk of
                        min(SAMPLE_CHUNK, SIGN_BYTES / H) points, 3 H + 24 w bytes each) + 16 (d w + w^2) bytes

    Training and the measures are added, not maxed: training's freed blocks under 4 MiB stay in the heap,
    where the measures' larger blocks do not fit. The sum bounds the peak resident growth measured in a
    fresh process with configure_malloc in force (tests/test_resources.py, benchmarks/RESULTS.md). The
    Jacobian penalties' 4 d is one [k, n, d] block more than their double backward holds at once: the peak of
    one config varies by about one such block from run to run (65-82 MiB, a 64x2 Jacobian-penalty L-BFGS
    trial measured 11 times: allocator noise), and the estimate must cover the worst run.
    """
    d, c = n_features(cfg), N_CLASSES[cfg.dataset]
    params = count_parameters(d, cfg.width, cfg.depth, c)
    n = step_points(cfg, cfg.n_train)
    train = {k: 4 * v for k, v in _training_terms(cfg, d, c, n, params).items()}
    measures = _measure_terms(cfg, d, c, chunk_size)
    terms = {"overhead": 32 * 2 ** 20, "data": 4 * 2 * (cfg.n_train + cfg.n_test) * d, **train}
    best = max(measures, key=measures.get)
    terms["measures"] = measures[best]
    return terms


def estimate_bytes(cfg: TrialConfig, chunk_size: int = 1024) -> int:
    """Peak bytes a trial adds to its process: the sum of `estimate_terms(cfg)` (see its formula)."""
    return int(sum(estimate_terms(cfg, chunk_size).values()))


def available_bytes(device: torch.device) -> int:
    """What a trial may use on `device`: 90% of the free GPU memory, or 80% of the available RAM."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free * 0.9)
    return int(psutil.virtual_memory().available * 0.8)


def check_memory(cfg: TrialConfig, device: torch.device, available: int | None = None) -> None:
    """Raise ResourceError, with the estimate, when the trial would not fit the device's memory."""
    need = estimate_bytes(cfg)
    have = available_bytes(device) if available is None else available
    if need > have:
        raise ResourceError(f"config needs about {need / GIB:.1f} GiB (width={cfg.width}, depth={cfg.depth}, "
                            f"n_train={cfg.n_train}, optimizer={cfg.optimizer}) but {device} has "
                            f"{have / GIB:.1f} GiB free; use a smaller width, depth, n_train or batch")


# -- giving memory back, and measuring what a trial takes -------------------------------------

def rss_bytes() -> int:
    """This process's resident set size now."""
    return int(psutil.Process().memory_info().rss)


def _malloc_trim() -> bool:
    """glibc malloc_trim(0): return the free pages of every malloc arena to the OS; False without glibc."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return False
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    trim(0)
    return True


FULL_COLLECT_EVERY = 32  # release_memory calls between two full collections of the frozen objects too,
FULL_COLLECT_S = 30.0  # and at least this many seconds (one costs 0.1-0.3 s: 3 ms a trial of 70 ms every 32)
_releases = 0
_last_full = (0, 0.0)  # (call, _clock()) of the last full collection
_clock = time.monotonic


def release_memory() -> int:
    """What a long-lived process calls after each trial: drop the trial's garbage (gc.collect: autograd
    graphs in reference cycles), bound the per-process caches (study.raw_data.load_raw's data sets, the
    jacobian_matching teachers; both also bounded as they fill) and hand the freed heap pages back to the
    OS (glibc malloc_trim(0): without it the holes a trial's tensors left stay resident). Changes no number
    any trial computes. Returns the resident bytes after.

    The objects that survive are then frozen (gc.freeze): a worker holds some 400k objects of torch, Ray
    and pandas, and a full collection that walks them all took 0.3 s a trial (a fifth of a small quick
    trial), and so did the collections Python runs by itself during the trial. Frozen objects are still
    freed when their last reference goes; only a reference cycle among them waits for the full collection
    (gc.unfreeze first) made once FULL_COLLECT_EVERY calls and FULL_COLLECT_S seconds have passed since the
    last one (the first call makes one)."""
    from study.raw_data import trim_raw_cache
    from study.regularizers.jacobian_matching import trim_teacher_cache

    global _releases, _last_full
    trim_raw_cache()
    trim_teacher_cache()
    _releases += 1
    call, when = _last_full
    if _releases == 1 or (_releases - call >= FULL_COLLECT_EVERY and _clock() - when >= FULL_COLLECT_S):
        gc.unfreeze()
        _last_full = (_releases, _clock())
    gc.collect()
    gc.freeze()
    _malloc_trim()
    return rss_bytes()


def _reset_peak() -> bool:
    """Reset this process's peak RSS (VmHWM, and ru_maxrss) to the current RSS: Linux >= 4.0."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def _peak_rss() -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise OSError("no VmHWM in /proc/self/status")


def _measure_child(payload: str) -> None:
    """In a fresh process: load the data set (cached), then run the trial; print its peak RSS growth as JSON."""
    args = json.loads(payload)
    torch.set_num_threads(args["threads"])
    from study.data import load_dataset
    from study.trial import run_trial

    cfg = TrialConfig.from_dict(args["config"])
    load_dataset(cfg, data_root=args["data_root"], download=False)  # fills load_raw's cache: in the baseline
    # A tiny trial of the same kind first: the library code a trial pages in on first use (BLAS, LAPACK,
    # autograd kernels, 100-250 MiB of mapped files) belongs to the imports, not to the trial.
    run_trial(cfg.replace(width=8, n_train=64, n_test=64, max_steps=2, eval_every=1, transition_samples=1024),
              data_root=args["data_root"], threads=args["threads"], download=False)
    gc.collect()
    _malloc_trim()
    baseline = rss_bytes()
    exact = _reset_peak()
    peak, done = [baseline], threading.Event()
    if not exact:  # no clear_refs: sample the RSS every millisecond instead
        def sample() -> None:
            while not done.wait(0.001):
                peak[0] = max(peak[0], rss_bytes())
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
    result = run_trial(cfg, data_root=args["data_root"], threads=args["threads"], download=False)
    done.set()
    top = _peak_rss() if exact else max(peak[0], rss_bytes())
    print(json.dumps({"baseline": baseline, "peak_growth": top - baseline, "status": result.status,
                      "steps": result.record.get("train.steps"), "error": result.record.get("error"),
                      "seconds": result.record.get("time.total_s"), "exact": exact}))


def measure_trial_memory(cfg: TrialConfig, data_root: str | None = None, threads: int = 1,
                         timeout: float = 900.0) -> dict:
    """Run `cfg` with run_trial in a fresh Python process and measure its peak growth: the peak resident
    memory above the process's baseline (after imports and loading the data set, before training).
    Returns {"baseline", "peak_growth" (bytes), "status", "steps", "error", "seconds", "exact"}."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
    payload = json.dumps({"config": cfg.canonical(), "data_root": data_root, "threads": threads})
    code = "import sys; from study.resources import _measure_child; _measure_child(sys.argv[1])"
    proc = subprocess.run([sys.executable, "-c", code, payload], capture_output=True, text=True, env=env,
                          timeout=timeout, cwd=root)
    if proc.returncode != 0:
        raise RuntimeError(f"memory measurement of {cfg.trial_id} failed: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])
