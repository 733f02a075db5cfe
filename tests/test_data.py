import os

import numpy as np
import pytest
import torch

from disk_formats import write_cifar_like, write_mnist_like
from study import raw_data as data_mod
from study.config import ConfigError, TrialConfig
from study.data import augment, load_dataset, randomize_labels, standardize, stratified_subset, translate
from study.datasets import TABLE as DATASET_TABLE
from study.raw_data import DataNotFoundError


def test_mnist_idx_files_load_through_torchvision(tmp_path):
    arrays = write_mnist_like(str(tmp_path / "MNIST" / "raw"))
    cfg = TrialConfig(dataset="mnist", n_train=20, n_test=10, standardize="none")
    data = load_dataset(cfg, data_root=str(tmp_path), download=False)
    assert data.x_train.shape == (20, 784) and data.image_shape == (1, 28, 28)
    expected = arrays["x_train"][data.train_index].reshape(20, -1) / 255.0
    np.testing.assert_allclose(data.x_train.numpy(), expected, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(data.y_train.numpy(), arrays["y_train"][data.train_index])
    assert np.bincount(data.y_train.numpy(), minlength=10).tolist() == [2] * 10  # stratified


def test_debian_gzipped_fashion_mnist_is_found_and_staged(tmp_path, monkeypatch):
    debian = tmp_path / "debian"
    arrays = write_mnist_like(str(debian), gz=True)
    monkeypatch.setattr(data_mod, "DEBIAN_FASHION_MNIST", str(debian))
    root = tmp_path / "root"
    cfg = TrialConfig(dataset="fashion_mnist", n_train=30, n_test=10, standardize="none")
    data = load_dataset(cfg, data_root=str(root), download=False)
    assert os.path.exists(root / "FashionMNIST" / "raw" / "train-images-idx3-ubyte")
    expected = arrays["x_test"][data.test_index].reshape(10, -1) / 255.0
    np.testing.assert_allclose(data.x_test.numpy(), expected, atol=1e-6)


def test_fashion_mnist_from_a_data_root_in_debian_layout(tmp_path, monkeypatch):
    monkeypatch.setattr(data_mod, "DEBIAN_FASHION_MNIST", str(tmp_path / "absent"))
    write_mnist_like(str(tmp_path / "files"), gz=True)
    data = load_dataset(TrialConfig(dataset="fashion_mnist", n_train=10, n_test=10), data_root=str(tmp_path / "files"),
                        download=False)
    assert data.x_train.shape == (10, 784)


@pytest.mark.parametrize("n_classes", [10, 100])
def test_cifar_pickles_load_center_cropped(tmp_path, monkeypatch, n_classes):
    arrays = write_cifar_like(str(tmp_path), monkeypatch, n_classes=n_classes, n_per_batch=200 if n_classes == 100 else 20)
    name = "cifar10" if n_classes == 10 else "cifar100"
    cfg = TrialConfig(dataset=name, n_train=n_classes, n_test=n_classes, standardize="none")
    data = load_dataset(cfg, data_root=str(tmp_path), download=False)
    assert data.image_shape == (3, 24, 24) and data.x_train.shape == (n_classes, 3 * 24 * 24)
    train = np.concatenate([d for d, _ in arrays["train"]]).reshape(-1, 3, 32, 32)
    expected = train[data.train_index][:, :, 4:28, 4:28].reshape(n_classes, -1) / 255.0
    np.testing.assert_allclose(data.x_train.numpy(), expected, atol=1e-6)


def test_missing_data_is_a_one_line_error_saying_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setattr(data_mod, "DEBIAN_FASHION_MNIST", str(tmp_path / "absent"))
    for name, hint in (("fashion_mnist", "apt-get install dataset-fashion-mnist"), ("cifar10", "--data-root")):
        with pytest.raises(DataNotFoundError) as err:
            load_dataset(TrialConfig(dataset=name), data_root=str(tmp_path / "empty"), download=False)
        assert hint in str(err.value) and "\n" not in str(err.value)


def test_n_train_larger_than_the_data_set_is_refused():
    with pytest.raises(ConfigError, match="n_train=2000 is larger than digits"):
        load_dataset(TrialConfig(dataset="digits", n_train=2000))


def test_synthetic_examples_do_not_depend_on_the_requested_size():
    small = data_mod.load_raw("synthetic", None, 8, True, 20000)
    large = data_mod.load_raw("synthetic", None, 8, True, 30000)
    np.testing.assert_array_equal(small[0], large[0][:20000])
    big = load_dataset(TrialConfig(n_train=25000, n_test=100, synthetic_dim=8))
    assert big.x_train.shape == (25000, 8)


def test_subsets_are_seeded_and_stratified():
    y = np.repeat(np.arange(10), 50)
    a, b = stratified_subset(y, 95, 7, 10), stratified_subset(y, 95, 7, 10)
    np.testing.assert_array_equal(a, b)
    counts = np.bincount(y[a], minlength=10)
    assert counts.sum() == 95 and counts.max() - counts.min() == 1
    assert not np.array_equal(a, stratified_subset(y, 95, 8, 10))
    skewed = np.array([0] * 3 + [1] * 100)  # class 0 has fewer examples than its quota
    assert len(stratified_subset(skewed, 20, 0, 2)) == 20


def test_same_config_same_tensors_and_paired_configs_share_data():
    a = load_dataset(TrialConfig(dataset="digits", n_train=100, n_test=50))
    b = load_dataset(TrialConfig(dataset="digits", n_train=100, n_test=50, lr=0.5, width=7))
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_train, b.y_train)


def test_standardization_choices():
    rng = np.random.default_rng(0)
    x = rng.random((200, 5)).astype(np.float32)
    x[:, 0] = 0.0
    x[0, 0] = 1.0  # a border pixel that is almost always zero
    g_tr, _ = standardize(x, x, "global")
    p_tr, _ = standardize(x, x, "per_pixel")
    np.testing.assert_allclose(g_tr.mean(0), 0, atol=1e-6)
    assert abs(g_tr.std() - 1) < 1e-4
    assert abs(g_tr[0, 0]) < 5 < abs(p_tr[0, 0])  # per-pixel std inflates the rare border value
    n_tr, _ = standardize(x, x, "none")
    np.testing.assert_array_equal(n_tr, x)


def test_random_labels_fraction():
    y = np.zeros(1000, dtype=np.int64)
    z = randomize_labels(y, 0.5, 10, 0)
    changed = (z != 0).mean()
    assert 0.5 * 0.9 - 0.05 < changed < 0.5 * 0.9 + 0.05  # 1/10 of drawn labels equal the true one
    np.testing.assert_array_equal(randomize_labels(y, 0.0, 10, 0), y)
    cfg = TrialConfig(dataset="digits", n_train=200, n_test=50, random_labels=1.0)
    data = load_dataset(cfg)
    assert (data.y_train != data.y_train_true).float().mean() > 0.8


def test_translation_and_augmentation_shift_pixels():
    img = torch.zeros(1, 1, 4, 5)
    img[0, 0, 1, 1] = 1.0
    x = img.reshape(1, -1)
    moved = translate(x, (1, 4, 5), 2).reshape(4, 5)
    assert moved[1, 3] == 1.0 and moved.sum() == 1.0
    half = translate(x, (1, 4, 5), 0.5).reshape(4, 5)
    assert half[1, 1] == 0.5 and half[1, 2] == 0.5
    back = translate(x, (1, 4, 5), -1).reshape(4, 5)
    assert back[1, 0] == 1.0
    gen = torch.Generator().manual_seed(0)
    batch = x.repeat(64, 1)
    out = augment(batch, (1, 4, 5), 1, False, gen).reshape(64, 4, 5)
    assert torch.all(out.sum((1, 2)) <= 1.0)
    positions = {tuple(torch.nonzero(o)[0].tolist()) for o in out if o.sum() > 0}
    assert len(positions) > 4  # several distinct shifts
    assert all(abs(r - 1) <= 1 and abs(c - 1) <= 1 for r, c in positions)
    flipped = augment(batch, (1, 4, 5), 0, True, gen).reshape(64, 4, 5)
    assert {tuple(torch.nonzero(o)[0].tolist()) for o in flipped} == {(1, 1), (1, 3)}


def _write_files_for(spec, root, monkeypatch) -> None:
    """Tiny files in the real on-disk format of a torchvision data set of the table."""
    if spec.torchvision_class in ("MNIST", "FashionMNIST"):
        write_mnist_like(os.path.join(root, spec.torchvision_class, "raw"), n_train=200, n_test=100)
    elif spec.torchvision_class in ("CIFAR10", "CIFAR100"):
        write_cifar_like(root, monkeypatch, n_classes=spec.n_classes, n_per_batch=200)
    elif spec.source not in ("sklearn-digits", "synthetic"):
        raise AssertionError(f"no test files for {spec.name} ({spec.source}): add a writer to tests/disk_formats.py")


@pytest.mark.parametrize("name", DATASET_TABLE)
def test_every_data_set_of_the_table_loads_as_declared(tmp_path, monkeypatch, name):
    """Each entry of study.datasets: the config accepts it, and its data loads with the declared example shape
    and class count (labels within it); splits on disk at most the declared sizes."""
    spec = DATASET_TABLE[name]
    monkeypatch.setattr(data_mod, "DEBIAN_FASHION_MNIST", str(tmp_path / "absent"))
    _write_files_for(spec, str(tmp_path), monkeypatch)
    cfg = TrialConfig(dataset=name, n_train=spec.n_classes, n_test=spec.n_classes, standardize="none")
    data = load_dataset(cfg, data_root=str(tmp_path), download=False)
    shape = spec.image_shape or (1, 1, cfg.synthetic_dim)
    assert data.image_shape == shape and data.n_features == int(np.prod(shape)) and data.n_classes == spec.n_classes
    assert int(data.y_train.max()) < spec.n_classes and int(data.y_test.max()) < spec.n_classes
    if spec.source == "sklearn-digits":
        xtr, _, xte, _ = data_mod.load_raw(name, None, cfg.synthetic_dim, False, 20000)
        assert (len(xtr), len(xte)) == spec.splits


def test_without_torchvision_an_image_data_set_is_a_one_line_error(tmp_path, monkeypatch):
    """An image's torch without torchvision (some GPU images): a ConfigError naming torchvision, no traceback."""
    import sys

    from study.config import ConfigError
    from study.raw_data import check_available

    monkeypatch.setitem(sys.modules, "torchvision", None)  # import torchvision now raises ImportError
    monkeypatch.setitem(sys.modules, "torchvision.datasets", None)
    with pytest.raises(ConfigError, match="read with torchvision, which does not import here"):
        check_available("mnist", str(tmp_path), download=False)
