"""Data sets as tensors on the trial's device: subset, flatten, standardize, corrupt labels, augment (the
whole data sets come from study.raw_data; what each one is: study.datasets).

Standardization (`standardize`):
- "global" (default): subtract the per-pixel mean of the training subset, divide by one global
  std (of all training pixels). Per-pixel std would divide border pixels that are almost always 0
  by a tiny std and blow up their rare non-zero values, making them the most salient inputs.
- "per_pixel": per-pixel mean and std (std floored at 1e-2 of the global std).
- "none": pixels in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from study.config import ConfigError, TrialConfig
from study.datasets import IMAGE_SHAPES, N_CLASSES
from study.raw_data import load_raw


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
