import math

import torch

from study.config import TrialConfig
from study.models import MLP, build_model, count_parameters


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


def test_every_nonlinearity_builds_and_runs():
    for name in ("relu", "relu6", "tanh", "hardtanh", "hardsigmoid", "leaky_relu", "sigmoid", "softplus"):
        model = MLP(4, 8, 3, 2, name)
        assert torch.isfinite(model(torch.randn(5, 4))).all()
