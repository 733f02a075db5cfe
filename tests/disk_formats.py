"""Tiny data sets written in the real on-disk formats (IDX, CIFAR pickle batches), for the data tests."""

from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import struct

import numpy as np


def write_idx_images(path: str, images: np.ndarray, gz: bool = False) -> None:
    """IDX3: magic 0x00000803, count, rows, cols (big-endian int32), then uint8 pixels."""
    n, rows, cols = images.shape
    payload = struct.pack(">iiii", 0x803, n, rows, cols) + images.astype(np.uint8).tobytes()
    with (gzip.open if gz else open)(path, "wb") as handle:
        handle.write(payload)


def write_idx_labels(path: str, labels: np.ndarray, gz: bool = False) -> None:
    """IDX1: magic 0x00000801, count, then uint8 labels."""
    payload = struct.pack(">ii", 0x801, len(labels)) + labels.astype(np.uint8).tobytes()
    with (gzip.open if gz else open)(path, "wb") as handle:
        handle.write(payload)


def make_images(n: int, seed: int, shape=(28, 28), n_classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % n_classes
    images = rng.integers(0, 256, size=(n,) + shape).astype(np.uint8)
    return images, labels


def write_mnist_like(directory: str, n_train: int = 60, n_test: int = 30, gz: bool = False) -> dict:
    """The four IDX files of (Fashion-)MNIST in `directory`; returns the arrays written."""
    os.makedirs(directory, exist_ok=True)
    suffix = ".gz" if gz else ""
    xtr, ytr = make_images(n_train, 1)
    xte, yte = make_images(n_test, 2)
    write_idx_images(os.path.join(directory, "train-images-idx3-ubyte" + suffix), xtr, gz)
    write_idx_labels(os.path.join(directory, "train-labels-idx1-ubyte" + suffix), ytr, gz)
    write_idx_images(os.path.join(directory, "t10k-images-idx3-ubyte" + suffix), xte, gz)
    write_idx_labels(os.path.join(directory, "t10k-labels-idx1-ubyte" + suffix), yte, gz)
    return {"x_train": xtr, "y_train": ytr, "x_test": xte, "y_test": yte}


def write_cifar_like(root: str, monkeypatch, n_classes: int = 10, n_per_batch: int = 20) -> dict:
    """CIFAR-10/100 python pickle batches (dict with 'data' [N, 3072] uint8 and labels, protocol 2 as the
    release's Python 2 pickles) and the meta file.

    torchvision checks each file's md5 against its table of the real release: the test points that
    table at the tiny files it wrote (the format is the real one; only the checksums differ)."""
    import torchvision.datasets as tvd

    rng = np.random.default_rng(3)
    if n_classes == 10:
        cls, folder, label_key = tvd.CIFAR10, "cifar-10-batches-py", "labels"
        train_names, test_names, meta = [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], "batches.meta"
        meta_key, meta_value = "label_names", [f"c{i}" for i in range(10)]
    else:
        cls, folder, label_key = tvd.CIFAR100, "cifar-100-python", "fine_labels"
        train_names, test_names, meta = ["train"], ["test"], "meta"
        meta_key, meta_value = "fine_label_names", [f"c{i}" for i in range(100)]
    base = os.path.join(root, folder)
    os.makedirs(base, exist_ok=True)
    arrays = {}

    def write(name: str, split: str) -> list:
        data = rng.integers(0, 256, size=(n_per_batch, 3072)).astype(np.uint8)
        labels = list((np.arange(n_per_batch) % n_classes).tolist())
        with open(os.path.join(base, name), "wb") as handle:
            pickle.dump({label_key: labels, "data": data}, handle, protocol=2)
        arrays.setdefault(split, []).append((data, labels))
        return [name, hashlib.md5(open(os.path.join(base, name), "rb").read()).hexdigest()]

    train_list = [write(n, "train") for n in train_names]
    test_list = [write(n, "test") for n in test_names]
    with open(os.path.join(base, meta), "wb") as handle:
        pickle.dump({meta_key: meta_value}, handle, protocol=2)
    meta_md5 = hashlib.md5(open(os.path.join(base, meta), "rb").read()).hexdigest()
    monkeypatch.setattr(cls, "train_list", train_list)
    monkeypatch.setattr(cls, "test_list", test_list)
    monkeypatch.setattr(cls, "meta", {"filename": meta, "key": meta_key, "md5": meta_md5})
    return arrays
