"""The data sets a trial may train on: one spec each, and everything else (config validation, the loaders
in study.raw_data, the input shape and class count of a net, augmentation's flips, the memory estimate,
the up-front size checks) reads this table. Adding a data set is one entry here, plus its loader in
study.raw_data if torchvision does not have it. No torch or numpy import here, so study.config stays light.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DatasetSpec:
    """One data set: its classes, one example's (C, H, W) as trained (None: a feature vector of any size),
    the examples of its (train, test) splits on disk (None: any number), where it comes from, the center
    crop applied to its images (None: none), whether augmentation flips it horizontally, and how a user
    gets it when it is missing."""

    name: str
    n_classes: int
    image_shape: tuple[int, int, int] | None
    splits: tuple[int, int] | None
    source: str  # "torchvision:<class>", "sklearn-digits" or "synthetic"
    crop: int | None = None
    flip: bool = False
    how_to_get: str = ""

    @property
    def torchvision_class(self) -> str | None:
        return self.source.split(":", 1)[1] if self.source.startswith("torchvision:") else None


def _download(cls: str) -> str:
    return (f"download it where the internet is reachable (torchvision.datasets.{cls}(root, download=True)) "
            "and pass that root as --data-root")


TABLE: dict[str, DatasetSpec] = {d.name: d for d in (
    DatasetSpec("mnist", 10, (1, 28, 28), (60000, 10000), "torchvision:MNIST", how_to_get=_download("MNIST")),
    DatasetSpec("fashion_mnist", 10, (1, 28, 28), (60000, 10000), "torchvision:FashionMNIST",
                how_to_get="install it with `apt-get install dataset-fashion-mnist` (or `make setup`), or put "
                           "torchvision's FashionMNIST/raw files under --data-root"),
    # CIFAR: 32x32 images center-cropped to 24x24 and flipped by augmentation, as in the study
    DatasetSpec("cifar10", 10, (3, 24, 24), (50000, 10000), "torchvision:CIFAR10", crop=24, flip=True,
                how_to_get=_download("CIFAR10")),
    DatasetSpec("cifar100", 100, (3, 24, 24), (50000, 10000), "torchvision:CIFAR100", crop=24, flip=True,
                how_to_get=_download("CIFAR100")),
    DatasetSpec("digits", 10, (1, 8, 8), (1297, 500), "sklearn-digits"),  # a fixed split of sklearn's 1797
    DatasetSpec("synthetic", 10, None, None, "synthetic"),  # a Gaussian mixture of any size and dimension
)}

NAMES: tuple[str, ...] = tuple(TABLE)
N_CLASSES: dict[str, int] = {name: d.n_classes for name, d in TABLE.items()}
IMAGE_SHAPES: dict[str, tuple[int, int, int]] = {name: d.image_shape for name, d in TABLE.items() if d.image_shape}
SPLIT_SIZES: dict[str, tuple[int, int]] = {name: d.splits for name, d in TABLE.items() if d.splits}
