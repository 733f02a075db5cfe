"""Whole data sets as numpy arrays, read once per process: torchvision's loaders for the real ones, sklearn's
digits, a synthetic Gaussian mixture (what each data set is: study.datasets).

Real data sets go through torchvision's own loaders (MNIST, FashionMNIST, CIFAR10, CIFAR100) from a
data root; when the files are absent, a download is tried, and if that fails the error says how to
get them. Fashion-MNIST is also found where Debian's `dataset-fashion-mnist` package installs it
(/usr/share/datasets/fashion-mnist, gzipped IDX): the files are unpacked once into the torchvision
layout under the data root, then read by torchvision.
"""

from __future__ import annotations

import gzip
import os
import shutil
import socket

import numpy as np
import torch

from study.config import ConfigError, TrialConfig
from study.datasets import SPLIT_SIZES, TABLE
from study.records import write_atomic

DEBIAN_FASHION_MNIST = "/usr/share/datasets/fashion-mnist"


class DataNotFoundError(ConfigError):
    """A data set that is not on disk and could not be downloaded."""


class TorchvisionMissing(ConfigError):
    """An image data set asked for where torchvision does not import."""


def default_data_root() -> str:
    return os.environ.get("SENSITIVITY_DATA_ROOT", os.path.expanduser("~/.cache/sensitivity-study/data"))


# -- raw loaders: (x uint8/float [N, C, H, W] in [0, 1], y int64 [N]) per split --------------------

def _stage_debian_fashion_mnist(source: str, root: str) -> bool:
    """Unpack Debian's gzipped IDX files into torchvision's layout under root; True if staged."""
    names = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    if not all(os.path.exists(os.path.join(source, n + ".gz")) or os.path.exists(os.path.join(source, n)) for n in names):
        return False
    raw = os.path.join(root, "FashionMNIST", "raw")
    os.makedirs(raw, exist_ok=True)
    for name in names:
        target = os.path.join(raw, name)
        if os.path.exists(target):
            continue
        plain = os.path.join(source, name)
        with (open(plain, "rb") if os.path.exists(plain) else gzip.open(plain + ".gz", "rb")) as src:
            write_atomic(raw, name, lambda sink: shutil.copyfileobj(src, sink))
    return True


def _torchvision_split(name: str, root: str, train: bool, download: bool):
    try:
        import torchvision.datasets as tvd
    except ImportError as exc:  # e.g. an image's torch without torchvision: one line, not a traceback
        raise TorchvisionMissing(f"data set {name} is read with torchvision, which does not import here ({exc}); "
                                 "install torchvision (make setup does) or use a synthetic data set") from None

    cls = getattr(tvd, TABLE[name].torchvision_class)
    return cls(root=root, train=train, download=download)


def _try_download(name: str, root: str) -> bool:
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(10)
    try:
        _torchvision_split(name, root, True, True)
        _torchvision_split(name, root, False, True)
        return True
    except Exception:  # no network, or a server error: report as missing data below
        return False
    finally:
        socket.setdefaulttimeout(old)


def _find_root(name: str, data_root: str | None, download: bool) -> str:
    """A root from which torchvision loads `name` without the network, or DataNotFoundError."""
    root = data_root or default_data_root()
    if _available(name, root):
        return root
    if name == "fashion_mnist":
        cache = root if _writable(root) else default_data_root()
        for source in ([root] if data_root else []) + [DEBIAN_FASHION_MNIST]:
            try:
                if _stage_debian_fashion_mnist(source, cache) and _available(name, cache):
                    return cache
            except OSError:
                continue
    if download and _try_download(name, root) and _available(name, root):
        return root
    raise DataNotFoundError(f"data set {name} not found under {root}: {TABLE[name].how_to_get}")


def _writable(path: str) -> bool:
    """Whether `path` can be written, or created under its nearest existing ancestor."""
    path = os.path.abspath(path)
    while not os.path.exists(path):
        path = os.path.dirname(path)
    return os.access(path, os.W_OK)


def _available(name: str, root: str) -> bool:
    try:
        _torchvision_split(name, root, False, False)
        return True
    except TorchvisionMissing:
        raise
    except (RuntimeError, OSError, ValueError):
        return False


def check_available(name: str, data_root: str | None = None, download: bool = True) -> None:
    """Raise DataNotFoundError (one line, with how to get it) unless `name` can be loaded."""
    if TABLE[name].torchvision_class:
        _find_root(name, data_root, download)


def check_sizes(cfg: TrialConfig) -> None:
    """Raise ConfigError (one line) if the data set has fewer than n_train / n_test examples; reads no data."""
    for split, n, available in zip(("n_train", "n_test"), (cfg.n_train, cfg.n_test), SPLIT_SIZES.get(cfg.dataset, ())):
        if n > available:
            raise ConfigError(f"{split}={n} is larger than {cfg.dataset}'s {split[2:]} split ({available} examples); "
                              f"use {split} <= {available}")


RAW_CACHE_BYTES, RAW_CACHE_ENTRIES = 1024 ** 3, 8  # load_raw's cache holds at most this much, and this many
_RAW: dict[tuple, tuple] = {}  # (load_raw's arguments) -> its value, least recently used first


def trim_raw_cache(max_bytes: int = RAW_CACHE_BYTES, max_entries: int = RAW_CACHE_ENTRIES) -> None:
    """Drop load_raw's least recently used data sets beyond max_entries or max_bytes (the latest one stays)."""
    while len(_RAW) > 1 and (len(_RAW) > max_entries or sum(a.nbytes for v in _RAW.values() for a in v) > max_bytes):
        _RAW.pop(next(iter(_RAW)))


def load_raw(name: str, data_root: str | None = None, synthetic_dim: int = 32,
             download: bool = True, synthetic_n: int = 20000) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Whole splits as numpy: x float32 [N, C, H, W] (or [N, d] for synthetic) in [0, 1], y int64.

    Cached per process (bounded: trim_raw_cache), so a worker that runs many trials reads each data set
    once. Callers must not write to the arrays. `load_raw.cache_clear()` empties the cache."""
    key = (name, data_root, synthetic_dim, download, synthetic_n)
    value = _RAW.pop(key, None)
    _RAW[key] = value if value is not None else _load_raw(*key)
    trim_raw_cache()
    return _RAW[key]


load_raw.cache_clear = _RAW.clear  # type: ignore[attr-defined]


def _load_raw(name: str, data_root: str | None, synthetic_dim: int, download: bool,
              synthetic_n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    spec = TABLE[name]
    if spec.source == "synthetic":
        return _synthetic(synthetic_dim, max(synthetic_n, 20000))
    if spec.source == "sklearn-digits":
        from sklearn.datasets import load_digits

        digits = load_digits()
        x = (digits.images.astype(np.float32) / 16.0)[:, None]
        y = digits.target.astype(np.int64)
        order = np.random.default_rng(0).permutation(len(y))  # the fixed split of spec.splits
        x, y = x[order], y[order]
        n_train = spec.splits[0]
        return x[:n_train], y[:n_train], x[n_train:], y[n_train:]
    root = _find_root(name, data_root, download)
    out = []
    for train in (True, False):
        split = _torchvision_split(name, root, train, False)
        data = split.data.numpy() if isinstance(split.data, torch.Tensor) else np.asarray(split.data)
        data = data[:, None] if data.ndim == 3 else data.transpose(0, 3, 1, 2)  # [N, C, H, W]
        if spec.crop:
            top, left = (data.shape[2] - spec.crop) // 2, (data.shape[3] - spec.crop) // 2
            data = data[:, :, top:top + spec.crop, left:left + spec.crop]
        targets = split.targets.numpy() if isinstance(split.targets, torch.Tensor) else np.asarray(split.targets)
        out += [np.ascontiguousarray(data, dtype=np.float32) / 255.0, targets.astype(np.int64)]
    return out[0], out[1], out[2], out[3]


def _synthetic(dim: int, n: int, n_classes: int = 10):
    """A fixed Gaussian mixture: class means ~ N(0, I), unit-variance noise; any size.

    Generated in blocks of 10,000 from per-block seeds, so example i is the same whatever n is."""
    means = np.random.default_rng([12345, dim]).normal(0.0, 1.0, size=(n_classes, dim))
    out = []
    for split in (0, 1):
        xs, ys = [], []
        for block in range((n + 9999) // 10000):
            rng = np.random.default_rng([12345, dim, split, block])
            y = rng.integers(0, n_classes, size=10000)
            xs.append(means[y] + rng.normal(0.0, 1.0, size=(10000, dim)))
            ys.append(y)
        out += [np.concatenate(xs)[:n].astype(np.float32), np.concatenate(ys)[:n].astype(np.int64)]
    return out[0], out[1], out[2], out[3]
