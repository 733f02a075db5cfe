"""The measures Jiang et al. 2020 ranked, beside the Jacobian norm: distance from initialization, the sum of
the layers' Frobenius distances, the inverse margin and the Fisher-Rao norm, each against an independent
computation (numpy, or per-point autograd gradients)."""

import math

import numpy as np
import pytest
import torch

from study import TrialConfig, load_dataset, run_trial
from study.measures import MEASURES, MeasureContext
from study.measures.fisher_rao import fisher_rao
from study.measures.inverse_margin import inverse_margin
from study.nonlinearities import TABLE

FAST = dict(dataset="digits", n_train=120, n_test=60, width=16, depth=3, max_steps=200, eval_every=50, lr=0.01,
            n_trajectories=0, init_scale=2.0)


@pytest.fixture(scope="module")
def trained():
    result = run_trial(TrialConfig(**FAST))
    return result, load_dataset(result.config)


def test_distances_from_initialization_against_numpy(trained):
    result, _ = trained
    cfg = result.config
    gen = torch.Generator().manual_seed(cfg.seed_for("init"))  # the init, drawn again: W ~ N(0, (s/sqrt(fan_in))^2)
    sizes = [64] + [cfg.width] * (cfg.depth - 1) + [10]
    start = [(torch.randn((b, a), generator=gen) * (cfg.init_scale / math.sqrt(a))).numpy()
             for a, b in zip(sizes, sizes[1:])]
    layers = result.model.layers
    weights = [layer.weight.detach().numpy().astype(np.float64) for layer in layers]
    biases = [layer.bias.detach().numpy().astype(np.float64) for layer in layers]
    squared = sum(((w - w0) ** 2).sum() for w, w0 in zip(weights, start)) + sum((b ** 2).sum() for b in biases)
    assert result.record["measure.dist_init"] == pytest.approx(math.sqrt(squared), rel=1e-9)
    frobenius = sum(np.linalg.norm(w - w0) for w, w0 in zip(weights, start))
    assert result.record["measure.frob_distance_sum"] == pytest.approx(frobenius, rel=1e-9)
    assert frobenius > 0


def test_inverse_margin_against_numpy(trained):
    result, data = trained
    with torch.no_grad():
        logits = result.model(data.x_train).double().numpy()
    y = data.y_train.numpy()
    correct = logits[np.arange(len(y)), y]
    others = np.where(np.eye(10, dtype=bool)[y], -np.inf, logits).max(axis=1)
    gamma = np.quantile(correct - others, 0.10)
    assert gamma > 0 and result.record["measure.inverse_margin"] == pytest.approx(1 / gamma ** 2, rel=1e-9)
    assert math.isnan(inverse_margin(0.0)) and math.isnan(inverse_margin(-0.3)) and inverse_margin(0.5) == 4.0


@pytest.mark.parametrize("nonlinearity", sorted(TABLE))
def test_fisher_rao_equals_theta_dot_per_point_gradients(nonlinearity):
    cfg = TrialConfig(**{**FAST, "nonlinearity": nonlinearity, "max_steps": 50})
    result = run_trial(cfg)
    data = load_dataset(cfg)
    model = result.model.double()
    x, y = data.x_train.double()[:40], data.y_train[:40]
    theta = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    dots = []
    for i in range(len(y)):  # one backward per point: <theta, grad_theta l_i>
        loss = torch.nn.functional.cross_entropy(model(x[i:i + 1]), y[i:i + 1])
        grads = torch.autograd.grad(loss, list(model.parameters()))
        dots.append(float(theta @ torch.cat([g.reshape(-1) for g in grads])))
    expected = (cfg.depth + 1) ** 2 * np.mean(np.square(dots))
    assert fisher_rao(model, x, y, cfg.depth, chunk_size=16) == pytest.approx(expected, rel=1e-9)


def test_the_registered_fisher_rao_is_over_the_training_set(trained):
    result, data = trained
    ctx = MeasureContext(cfg=result.config, model=result.model, data=data, device=torch.device("cpu"))
    value = MEASURES["fisher_rao"](ctx).record["measure.fisher_rao"]
    assert value == result.record["measure.fisher_rao"] == pytest.approx(
        fisher_rao(result.model.double(), data.x_train.double(), data.y_train, 3), rel=1e-4)
