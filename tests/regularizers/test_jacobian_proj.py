import math

import pytest
import torch

from study.config import TrialConfig
from study.regularizers import make_penalty
from study.regularizers.jacobian_proj import ProjectedJacobianPenalty, projected_sq_norms, sphere_directions

from reg_helpers import directional_fd_check, tiny_batch, tiny_mlp


def cfg_for(target="logits", projections=1, seed=0):
    return TrialConfig(regularizer="jacobian_proj", reg_strength=2.0, reg_target=target,
                       reg_projections=projections, seed=seed)


def test_directions_are_unit_vectors_with_isotropic_second_moment():
    v = sphere_directions(20000, 1, 4, torch.Generator().manual_seed(0))[:, 0]
    torch.testing.assert_close(v.norm(dim=1), torch.ones(20000, dtype=torch.float64))
    second = v.T @ v / len(v)  # E[v v^T] = I / C
    torch.testing.assert_close(second, torch.eye(4, dtype=torch.float64) / 4, atol=0.01, rtol=0)


@pytest.mark.parametrize("target", ["logits", "softmax"])
def test_mean_over_many_projections_matches_the_exact_penalty(target):
    """Unbiased: the mean of n one-projection estimates is within 4 standard errors of the exact value."""
    model = tiny_mlp("tanh")
    x, y = tiny_batch()
    exact = make_penalty(TrialConfig(regularizer="jacobian", reg_strength=2.0, reg_target=target))
    exact_value = exact(model, x, y, model(x)).item()
    penalty = make_penalty(cfg_for(target))
    assert isinstance(penalty, ProjectedJacobianPenalty)
    with torch.no_grad():
        logits = model(x)
    samples = torch.tensor([penalty(model, x, y, logits).item() for _ in range(1500)], dtype=torch.float64)
    mean, stderr = samples.mean().item(), samples.std().item() / math.sqrt(len(samples))
    assert samples.std().item() > 0.01 * exact_value  # fresh directions at every call
    assert abs(mean - exact_value) < 4 * stderr
    assert mean == pytest.approx(exact_value, rel=0.05)


def test_many_projections_in_one_call_average_to_the_exact_penalty():
    model = tiny_mlp("relu")
    x, y = tiny_batch()
    exact = make_penalty(TrialConfig(regularizer="jacobian", reg_strength=2.0)).__call__(model, x, y, model(x)).item()
    several = make_penalty(cfg_for(projections=4000))(model, x, y, model(x)).item()
    assert several == pytest.approx(exact, rel=0.05)


def test_same_config_draws_the_same_directions_and_seeds_differ():
    model = tiny_mlp("relu")
    x, y = tiny_batch()
    a, b, c = make_penalty(cfg_for()), make_penalty(cfg_for()), make_penalty(cfg_for(seed=1))
    first = [a(model, x, y, model(x)).item() for _ in range(3)]
    assert first == [b(model, x, y, model(x)).item() for _ in range(3)]
    assert first != [c(model, x, y, model(x)).item() for _ in range(3)]
    assert len(set(first)) == 3


@pytest.mark.parametrize("target", ["logits", "softmax"])
@pytest.mark.parametrize("k", [1, 3])
def test_parameter_gradient_matches_finite_differences(target, k):
    """With the directions held fixed the estimate is a smooth function of the parameters (tanh net)."""
    model = tiny_mlp("tanh")
    x, y = tiny_batch()
    directions = sphere_directions(k, x.shape[0], 4, torch.Generator().manual_seed(5))
    pairs = directional_fd_check(model, lambda: projected_sq_norms(model, x, model(x), directions, target).mean())
    for analytic, numeric in pairs:
        assert analytic == pytest.approx(numeric, rel=1e-6, abs=1e-9)
        assert abs(analytic) > 1e-6
