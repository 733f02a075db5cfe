"""Data sets as tensors on the trial's device: load, subset, flatten, standardize, corrupt labels, augment.

Real data sets go through torchvision's own loaders (MNIST, FashionMNIST, CIFAR10, CIFAR100) from a
data root; when the files are absent, a download is tried, and if that fails the error says how to
get them. Fashion-MNIST is also found where Debian's `dataset-fashion-mnist` package installs it
(/usr/share/datasets/fashion-mnist, gzipped IDX): the files are unpacked once into the torchvision
layout under the data root, then read by torchvision.

Standardization (`standardize`):
- "global" (default): subtract the per-pixel mean of the training subset, divide by one global
  std (of all training pixels). Per-pixel std would divide border pixels that are almost always 0
  by a tiny std and blow up their rare non-zero values, making them the most salient inputs.
- "per_pixel": per-pixel mean and std (std floored at 1e-2 of the global std).
- "none": pixels in [0, 1].
"""

from __future__ import annotations

import collections
import gzip
import os
import shutil
import socket
from dataclasses import dataclass

import numpy as np
import torch

from study.config import ConfigError, TrialConfig
from study.records import write_atomic

DEBIAN_FASHION_MNIST = "/usr/share/datasets/fashion-mnist"
IMAGE_SHAPES = {"mnist": (1, 28, 28), "fashion_mnist": (1, 28, 28), "cifar10": (3, 24, 24),
                "cifar100": (3, 24, 24), "digits": (1, 8, 8)}
N_CLASSES = {"mnist": 10, "fashion_mnist": 10, "cifar10": 10, "cifar100": 100, "digits": 10, "synthetic": 10}
_TV_CLASS = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST", "cifar10": "CIFAR10", "cifar100": "CIFAR100"}
_HOW_TO_GET = {
    "fashion_mnist": "install it with `apt-get install dataset-fashion-mnist` (or `make setup`), "
                     "or put torchvision's FashionMNIST/raw files under --data-root",
    "mnist": "download it where the internet is reachable (torchvision.datasets.MNIST(root, download=True)) "
             "and pass that root as --data-root",
    "cifar10": "download it where the internet is reachable (torchvision.datasets.CIFAR10(root, download=True)) "
               "and pass that root as --data-root",
    "cifar100": "download it where the internet is reachable (torchvision.datasets.CIFAR100(root, download=True)) "
                "and pass that root as --data-root",
}

# Examples in the (train, test) splits of each data set on disk (digits: the fixed split of load_raw);
# synthetic data has any size. Lets a sweep refuse an impossible n_train before any data is read.
SPLIT_SIZES = {"mnist": (60000, 10000), "fashion_mnist": (60000, 10000), "cifar10": (50000, 10000),
               "cifar100": (50000, 10000), "digits": (1297, 500)}


class DataNotFoundError(ConfigError):
    """A data set that is not on disk and could not be downloaded."""


@dataclass
class Dataset:
    """One trial's data. x_* are flattened float32 [n, d]; y_train holds the labels as trained."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    y_train_true: torch.Tensor  # before label randomization
    image_shape: tuple[int, int, int]  # (C, H, W) of one example, for translations and augmentation
    n_classes: int
    train_index: np.ndarray  # rows of the full training set that form the subset
    test_index: np.ndarray

    @property
    def n_features(self) -> int:
        return int(self.x_train.shape[1])

    def to(self, device: torch.device | str) -> "Dataset":
        moved = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in self.__dict__.items()}
        return Dataset(**moved)


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
    import torchvision.datasets as tvd

    cls = getattr(tvd, _TV_CLASS[name])
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
    raise DataNotFoundError(f"data set {name} not found under {root}: {_HOW_TO_GET[name]}")


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
    except (RuntimeError, OSError, ValueError):
        return False


def check_available(name: str, data_root: str | None = None, download: bool = True) -> None:
    """Raise DataNotFoundError (one line, with how to get it) unless `name` can be loaded."""
    if name in _TV_CLASS:
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
    if name == "synthetic":
        return _synthetic(synthetic_dim, max(synthetic_n, 20000))
    if name == "digits":
        from sklearn.datasets import load_digits

        digits = load_digits()
        x = (digits.images.astype(np.float32) / 16.0)[:, None]
        y = digits.target.astype(np.int64)
        order = np.random.default_rng(0).permutation(len(y))  # fixed split: first 1297 train, 500 test
        x, y = x[order], y[order]
        return x[:1297], y[:1297], x[1297:], y[1297:]
    root = _find_root(name, data_root, download)
    out = []
    for train in (True, False):
        split = _torchvision_split(name, root, train, False)
        data = split.data.numpy() if isinstance(split.data, torch.Tensor) else np.asarray(split.data)
        if data.ndim == 3:  # MNIST-like [N, H, W]
            data = data[:, None]
        else:  # CIFAR [N, H, W, C] -> [N, C, H, W], center-cropped to 24x24 as in the study
            data = data.transpose(0, 3, 1, 2)[:, :, 4:28, 4:28]
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


# -- subsets, standardization, labels ---------------------------------------------------------

def stratified_subset(y: np.ndarray, n: int, seed: int, n_classes: int) -> np.ndarray:
    """n indices with classes as balanced as the data allow (seeded); remainder classes drawn at random."""
    rng = np.random.default_rng(seed)
    by_class = [rng.permutation(np.flatnonzero(y == c)) for c in range(n_classes)]
    quota = np.full(n_classes, n // n_classes)
    quota[rng.permutation(n_classes)[: n % n_classes]] += 1
    take = np.minimum(quota, [len(b) for b in by_class])
    short = n - take.sum()
    while short > 0:  # a class has too few examples: fill from the classes that have more
        spare = [c for c in range(n_classes) if len(by_class[c]) > take[c]]
        for c in spare[:short]:
            take[c] += 1
        short = n - take.sum()
    index = np.concatenate([b[:t] for b, t in zip(by_class, take)])
    return np.sort(index)


def load_dataset(cfg: TrialConfig, data_root: str | None = None, device: torch.device | str = "cpu",
                 download: bool = True) -> Dataset:
    """The exact train/test tensors a trial uses (flattened, standardized, labels as trained)."""
    name = cfg.dataset
    size = max(cfg.n_train, cfg.n_test, 20000)
    xtr, ytr, xte, yte = load_raw(name, data_root, cfg.synthetic_dim, download, (size + 9999) // 10000 * 10000)
    n_classes = N_CLASSES[name]
    for split, n, available in (("n_train", cfg.n_train, len(ytr)), ("n_test", cfg.n_test, len(yte))):
        if n > available:
            raise ConfigError(f"{split}={n} is larger than {name}'s {split[2:]} split ({available} examples)")
    tr = stratified_subset(ytr, cfg.n_train, cfg.seed_for("subset-train", "dataset", "n_train"), n_classes)
    te = stratified_subset(yte, cfg.n_test, cfg.seed_for("subset-test", "dataset", "n_test"), n_classes)
    shape = IMAGE_SHAPES.get(name, (1, 1, xtr.shape[-1]))
    x_train = xtr[tr].reshape(len(tr), -1)
    x_test = xte[te].reshape(len(te), -1)
    x_train, x_test = standardize(x_train, x_test, cfg.standardize)
    y_true = ytr[tr]
    y_train = randomize_labels(y_true, cfg.random_labels, n_classes, cfg.seed_for("labels", "n_train", "random_labels"))
    data = Dataset(name=name, x_train=torch.from_numpy(x_train), y_train=torch.from_numpy(y_train),
                   x_test=torch.from_numpy(x_test), y_test=torch.from_numpy(yte[te].copy()),
                   y_train_true=torch.from_numpy(y_true.copy()), image_shape=shape, n_classes=n_classes,
                   train_index=tr, test_index=te)
    return data.to(device)


def standardize(x_train: np.ndarray, x_test: np.ndarray, how: str) -> tuple[np.ndarray, np.ndarray]:
    """Statistics from the training subset only, applied to both splits (see module docstring)."""
    if how == "none":
        return x_train.astype(np.float32), x_test.astype(np.float32)
    mean = x_train.mean(axis=0, keepdims=True)
    if how == "global":
        std = np.full_like(mean, max(float((x_train - mean).std()), 1e-8))
    else:
        overall = max(float((x_train - mean).std()), 1e-8)
        std = np.maximum(x_train.std(axis=0, keepdims=True), 1e-2 * overall)
    return ((x_train - mean) / std).astype(np.float32), ((x_test - mean) / std).astype(np.float32)


def randomize_labels(y: np.ndarray, fraction: float, n_classes: int, seed: int) -> np.ndarray:
    """Replace round(fraction * n) labels, chosen at random, by labels drawn uniformly from all classes
    (as Zhang et al. 2017; a drawn label can equal the true one)."""
    y = y.copy()
    count = int(round(fraction * len(y)))
    if count:
        rng = np.random.default_rng(seed)
        chosen = rng.choice(len(y), size=count, replace=False)
        y[chosen] = rng.integers(0, n_classes, size=count)
    return y


def augment(x: torch.Tensor, image_shape: tuple[int, int, int], shift: int, flip: bool,
            generator: torch.Generator) -> torch.Tensor:
    """Random translation by up to `shift` pixels in each direction (zero padding, i.e. the pixel mean
    after standardization) and, if `flip`, random horizontal flips. x: [B, C*H*W] on any device."""
    c, h, w = image_shape
    batch = x.shape[0]
    images = x.view(batch, c, h, w)
    if shift > 0:
        padded = torch.nn.functional.pad(images, (shift, shift, shift, shift))
        dy = torch.randint(0, 2 * shift + 1, (batch,), generator=generator).to(x.device)
        dx = torch.randint(0, 2 * shift + 1, (batch,), generator=generator).to(x.device)
        rows = (torch.arange(h, device=x.device)[None, :] + dy[:, None])  # [B, H]
        cols = (torch.arange(w, device=x.device)[None, :] + dx[:, None])  # [B, W]
        b = torch.arange(batch, device=x.device)[:, None, None, None]
        ch = torch.arange(c, device=x.device)[None, :, None, None]
        images = padded[b, ch, rows[:, None, :, None], cols[:, None, None, :]]
    if flip:
        mask = (torch.rand(batch, generator=generator) < 0.5).to(x.device)
        images = torch.where(mask[:, None, None, None], images.flip(-1), images)
    return images.reshape(batch, -1)


def translate(x: torch.Tensor, image_shape: tuple[int, int, int], dx: float) -> torch.Tensor:
    """Translate images horizontally by dx pixels (fractional shifts interpolate linearly between the two
    nearest integer shifts; zero padding). x: [B, C*H*W]."""
    c, h, w = image_shape
    lo = int(np.floor(dx))
    frac = dx - lo
    def shifted(s: int) -> torch.Tensor:
        img = x.view(-1, c, h, w)
        out = torch.zeros_like(img)
        if s >= 0:
            out[..., s:] = img[..., : w - s] if s < w else 0
        else:
            out[..., : w + s] = img[..., -s:]
        return out.reshape(x.shape)
    return shifted(lo) if frac == 0 else (1 - frac) * shifted(lo) + frac * shifted(lo + 1)
