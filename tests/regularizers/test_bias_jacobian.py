import pytest
import torch

from study.config import TrialConfig
from study.regularizers import make_penalty
from study.regularizers.bias_jacobian import BiasJacobianPenalty, bias_gradients, bias_terms

from reg_helpers import directional_fd_check, tiny_batch, tiny_mlp


def per_point_autograd(model, x, y, target="logits"):
    """f, grad_x f and grad_{b_l} f for one point at a time, from the model's own parameters."""
    fs, gx, gb = [], [], []
    for i in range(x.shape[0]):
        xi = x[i:i + 1].clone().requires_grad_(True)
        out = model(xi)
        out = out if target == "logits" else torch.softmax(out, 1)
        f = out[0, y[i]]
        grads = torch.autograd.grad(f, [xi] + [layer.bias for layer in model.layers])
        fs.append(f.detach())
        gx.append(grads[0][0])
        gb.append([g.detach() for g in grads[1:]])
    return torch.stack(fs), torch.stack(gx), gb


@pytest.mark.parametrize("nonlinearity", ["relu", "leaky_relu"])
def test_completeness_holds_for_relu_nets_with_biases(nonlinearity):
    """f(x) = grad_x f^T x + sum_l grad_{b_l} f . b_l (Srinivas & Fleuret 2019), to float64 precision."""
    model = tiny_mlp(nonlinearity, depth=4)
    x, y = tiny_batch(n=8)
    f, gx, _ = per_point_autograd(model, x, y)
    terms = bias_terms(model, x, y, create_graph=False)
    bias_part = sum(t.sum(dim=1) for t in terms).detach()
    assert float(bias_part.abs().min()) > 1e-3  # the biases matter: the input part alone is not f
    torch.testing.assert_close((gx * x).sum(dim=1) + bias_part, f, rtol=1e-12, atol=1e-12)


def test_completeness_fails_without_homogeneity():
    """The identity is specific to (leaky) ReLU: tanh misses it, so the test above can fail."""
    model = tiny_mlp("tanh", depth=4)
    x, y = tiny_batch(n=8)
    f, gx, _ = per_point_autograd(model, x, y)
    bias_part = sum(t.sum(dim=1) for t in bias_terms(model, x, y, create_graph=False)).detach()
    assert float(((gx * x).sum(dim=1) + bias_part - f).abs().max()) > 1e-3


@pytest.mark.parametrize("target", ["logits", "softmax"])
def test_bias_gradients_match_per_point_autograd(target):
    model = tiny_mlp("tanh")
    x, y = tiny_batch(n=5)
    f, grads = bias_gradients(model, x, y, target, create_graph=False)
    f_ref, _, gb = per_point_autograd(model, x, y, target)
    torch.testing.assert_close(f.detach(), f_ref)
    for layer_index in range(len(model.layers)):
        reference = torch.stack([g[layer_index] for g in gb])
        torch.testing.assert_close(grads[layer_index], reference, rtol=1e-12, atol=1e-14)


def test_penalty_value_and_parameter_gradient():
    model = tiny_mlp("tanh")
    x, y = tiny_batch(n=5)
    penalty = make_penalty(TrialConfig(regularizer="bias_jacobian", reg_strength=3.0))
    assert isinstance(penalty, BiasJacobianPenalty)
    _, _, gb = per_point_autograd(model, x, y)
    reference = sum(sum(float(((g * layer.bias.detach()) ** 2).sum()) for g, layer in zip(point, model.layers))
                    for point in gb) / x.shape[0] * 1.5
    assert penalty(model, x, y, model(x)).item() == pytest.approx(reference, rel=1e-12)
    for analytic, numeric in directional_fd_check(model, lambda: penalty(model, x, y, model(x))):
        assert analytic == pytest.approx(numeric, rel=1e-6, abs=1e-9)
        assert abs(analytic) > 1e-6


def test_vanishes_at_zero_biases():
    model = tiny_mlp("relu", bias_std=0.0)
    x, y = tiny_batch()
    value = make_penalty(TrialConfig(regularizer="bias_jacobian", reg_strength=3.0))(model, x, y, model(x))
    grads = torch.autograd.grad(value, list(model.parameters()), allow_unused=True)
    assert value.item() == 0.0 and all(g is None or float(g.abs().max()) == 0.0 for g in grads)
