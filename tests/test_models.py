import math

import torch

import pytest

from study.config import TrialConfig
from study.models import MLP, activation, build_model, count_parameters
from study.nonlinearities import NAMES as NONLINEARITIES, TABLE


def test_shapes_depth_and_parameter_count():
    model = build_model(TrialConfig(width=32, depth=5), 20, 10)
    assert len(model.layers) == 5 and model.n_neurons() == 4 * 32
    assert sum(p.numel() for p in model.parameters()) == count_parameters(20, 32, 5, 10)
    assert model(torch.randn(3, 20)).shape == (3, 10)
    assert len(model.preactivations(torch.randn(3, 20))) == 4


def test_init_std_is_scale_over_sqrt_fan_in_and_seeded():
    model = build_model(TrialConfig(width=2000, depth=2, init_scale=4.0), 500, 10)
    std = model.layers[0].weight.std().item()
    assert abs(std - 4.0 / math.sqrt(500)) < 0.01 * 4.0 / math.sqrt(500)
    assert torch.all(model.layers[0].bias == 0)
    again = build_model(TrialConfig(width=2000, depth=2, init_scale=4.0, lr=0.5), 500, 10)
    assert torch.equal(model.layers[1].weight, again.layers[1].weight)
    other = build_model(TrialConfig(width=2000, depth=2, init_scale=4.0, seed=1), 500, 10)
    assert not torch.equal(model.layers[1].weight, other.layers[1].weight)


@pytest.mark.parametrize("name", NONLINEARITIES)
def test_every_nonlinearity_builds_runs_and_has_the_kinks_it_declares(name):
    """Each table entry builds a net; a piecewise-linear one is affine between its declared kinks and changes
    slope at each; a smooth one (kinks None) is affine on no interval."""
    model = MLP(4, 8, 3, 2, name)
    assert torch.isfinite(model(torch.randn(5, 4))).all()
    act, kinks = activation(name), TABLE[name].kinks
    x = torch.linspace(-10, 10, 20001, dtype=torch.float64)
    slope = torch.diff(act(x)) / torch.diff(x)
    change = (torch.diff(slope).abs() > 1e-6).nonzero().flatten()
    if kinks is None:
        assert len(change) > 1000  # curved everywhere
    else:
        found = sorted({round(float(x[i + 1]), 2) for i in change})
        assert found == [round(k, 2) for k in kinks], (name, found)
