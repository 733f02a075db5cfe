import itertools
import math

import numpy as np
import pytest
import torch
from torch import nn

from study.config import TrialConfig
from study.data import Dataset
from study.measures import MEASURES, MeasureContext
from study.measures.baselines import (margin, margins, parameter_norm, path_norm, spectral_norm, spectral_norms,
                                      spectral_over_margin, spectral_product)
from study.models import MLP
from study.schema import columns


def tiny_mlp(sizes=(3, 4, 2), seed=0) -> MLP:
    """An MLP with the given layer sizes (equal hidden widths), random weights and biases, float64."""
    model = MLP(sizes[0], sizes[1], len(sizes) - 1, sizes[-1], "relu").double()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in model.layers:
            layer.weight.copy_(torch.randn(layer.weight.shape, generator=gen, dtype=torch.float64))
            layer.bias.copy_(torch.randn(layer.bias.shape, generator=gen, dtype=torch.float64))
    return model.eval().requires_grad_(False)


def test_parameter_norm_is_the_manual_sum_of_squares():
    model = tiny_mlp()
    weights = sum(float((l.weight ** 2).sum()) for l in model.layers)
    biases = sum(float((l.bias ** 2).sum()) for l in model.layers)
    assert parameter_norm(model) == pytest.approx(math.sqrt(weights), rel=1e-12)
    assert parameter_norm(model, include_biases=True) == pytest.approx(math.sqrt(weights + biases), rel=1e-12)
    assert biases > 0  # so the two differ


def test_spectral_norms_match_numpy_svd():
    model = tiny_mlp((5, 7, 7, 3), seed=1)
    expected = [np.linalg.svd(l.weight.numpy(), compute_uv=False)[0] for l in model.layers]
    np.testing.assert_allclose(spectral_norms(model), expected, rtol=1e-10)
    assert spectral_product(model) == pytest.approx(float(np.prod(expected)), rel=1e-10)


@pytest.mark.parametrize("shape", [(300, 120), (120, 300)])
def test_spectral_norm_of_a_matrix_with_known_singular_values(shape):
    """W = U diag(σ) V^T with orthonormal U, V: ||W||_2 = max σ, to near machine precision, tall or wide."""
    g = np.random.default_rng(3)
    k = min(shape)
    u = np.linalg.qr(g.standard_normal((shape[0], k)))[0]
    v = np.linalg.qr(g.standard_normal((shape[1], k)))[0]
    sigma = np.sort(g.uniform(0.1, 7.0, k))[::-1]
    sigma[1] = sigma[0] * (1 - 1e-9)  # a near-tie at the top does not disturb the value
    w = torch.from_numpy(u @ np.diag(sigma) @ v.T).float()
    assert spectral_norm(w) == pytest.approx(float(np.linalg.svd(w.double().numpy(), compute_uv=False)[0]), rel=1e-12)
    assert spectral_norm(w) == pytest.approx(sigma[0], rel=1e-6)  # float32 rounding of W


def brute_force_path_norm(model: MLP) -> float:
    """sqrt of the sum over every input -> hidden ... -> output path of the product of squared weights."""
    weights = [l.weight.detach().numpy() for l in model.layers]
    sizes = [weights[0].shape[1]] + [w.shape[0] for w in weights]
    total = 0.0
    for path in itertools.product(*(range(n) for n in sizes)):
        total += math.prod(weights[l][path[l + 1], path[l]] ** 2 for l in range(len(weights)))
    return math.sqrt(total)


@pytest.mark.parametrize("sizes", [(3, 4, 2), (3, 4, 4, 2), (2, 3, 3, 3, 2)])
def test_path_norm_matches_enumeration_of_all_paths(sizes):
    model = tiny_mlp(sizes, seed=len(sizes))
    assert path_norm(model) == pytest.approx(brute_force_path_norm(model), rel=1e-10)


def test_path_norm_is_homogeneous_and_does_not_overflow_when_deep():
    model = tiny_mlp((4, 6, 6, 6, 2), seed=2)
    base = path_norm(model)
    with torch.no_grad():
        for layer in model.layers:
            layer.weight.mul_(2.0)
    assert path_norm(model) == pytest.approx(base * 2.0 ** 4, rel=1e-10)
    deep = MLP(10, 50, 60, 10, "relu").double()  # 60 layers of weights 10: plain float32 products overflow
    with torch.no_grad():
        for layer in deep.layers:
            layer.weight.fill_(10.0)
    # all-equal weights: path norm^2 = 10 * 50^59 * 10 * 100^60
    expected_log = 0.5 * (math.log(10) + 59 * math.log(50) + math.log(10) + 60 * math.log(100))
    assert math.log(path_norm(deep)) == pytest.approx(expected_log, rel=1e-10)


def test_margin_hand_example():
    logits = torch.tensor([[3.0, 1.0, 0.0],    # y=0: 3 - 1 = 2
                           [1.0, 2.0, 0.5],    # y=0: 1 - 2 = -1 (misclassified)
                           [0.0, 0.0, 5.0],    # y=2: 5 - 0 = 5
                           [4.0, 0.0, -1.0],   # y=0: 4 - 0 = 4
                           [2.0, 3.0, 1.0]])   # y=1: 3 - 2 = 1
    y = torch.tensor([0, 0, 2, 0, 1])
    identity = nn.Identity()  # the "net" outputs its input: the logits above
    torch.testing.assert_close(margins(identity, logits, y, chunk_size=2).float(),
                               torch.tensor([2.0, -1.0, 5.0, 4.0, 1.0]))
    # sorted [-1, 1, 2, 4, 5]; 10th percentile at position 0.1 * 4 = 0.4: -1 + 0.4 * (1 - (-1)) = -0.2
    assert margin(identity, logits, y) == pytest.approx(-0.2)
    assert margin(identity, logits, y, quantile=0.5) == pytest.approx(2.0)


def test_spectral_over_margin_formula_and_undefined_margin():
    model = tiny_mlp((3, 4, 2), seed=3)
    x = torch.randn(20, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    y = model(x).argmax(1)  # every point correctly classified: positive margin
    gamma = margin(model, x, y)
    assert gamma > 0
    expected = np.prod([np.linalg.svd(l.weight.detach().numpy(), compute_uv=False)[0] ** 2
                        for l in model.layers]) / gamma ** 2
    assert spectral_over_margin(model, x, y) == pytest.approx(expected, rel=1e-10)
    wrong = model(x).argmin(1)  # every point misclassified: margin < 0, measure undefined
    assert math.isnan(spectral_over_margin(model, x, wrong))


def test_registered_measure_records_the_five_columns():
    model = tiny_mlp((6, 8, 8, 4), seed=5).float()
    gen = torch.Generator().manual_seed(6)
    x_train, x_test = torch.randn(30, 6, generator=gen), torch.randn(10, 6, generator=gen)
    y_train, y_test = torch.randint(0, 4, (30,), generator=gen), torch.randint(0, 4, (10,), generator=gen)
    data = Dataset("synthetic", x_train, y_train, x_test, y_test, y_train, (1, 1, 6), 4,
                   np.arange(30), np.arange(10))
    ctx = MeasureContext(TrialConfig(), model, data, torch.device("cpu"), chunk_size=7)
    record = MEASURES["baselines"](ctx).record
    names = ["measure.param_norm", "measure.spectral_product", "measure.path_norm", "measure.margin",
             "measure.spectral_margin"]
    assert sorted(record) == sorted(names)
    assert all(name in columns("trials") for name in names)
    assert record["measure.param_norm"] == pytest.approx(parameter_norm(model))
    assert record["measure.spectral_product"] == pytest.approx(spectral_product(model), rel=1e-12)
    assert record["measure.path_norm"] == pytest.approx(path_norm(model), rel=1e-12)
    assert record["measure.margin"] == pytest.approx(margin(model, x_train, y_train))
    sm = spectral_over_margin(model, x_train, y_train)
    assert (math.isnan(sm) and math.isnan(record["measure.spectral_margin"])) or \
        record["measure.spectral_margin"] == pytest.approx(sm, rel=1e-12)
