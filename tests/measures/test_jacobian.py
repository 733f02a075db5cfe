import pytest
import torch

from study.config import TrialConfig
from study.measures.jacobian import jacobian_norms, logit_jacobian
from study.models import build_model


def reference(model, x, y):
    """Point by point with torch.autograd.functional.jacobian (an independent computation)."""
    soft, logit, row = [], [], []
    for i in range(x.shape[0]):
        a = torch.autograd.functional.jacobian(lambda v: model(v[None])[0], x[i])
        j = torch.autograd.functional.jacobian(lambda v: torch.softmax(model(v[None])[0], 0), x[i])
        soft.append(j.norm())
        logit.append(a.norm())
        row.append(j[y[i]].norm())
    return torch.stack(soft), torch.stack(logit), torch.stack(row)


@pytest.mark.parametrize("nonlinearity", ["relu", "tanh", "hardsigmoid", "relu6"])
@pytest.mark.parametrize("width, n_in", [(8, 20), (30, 6)])  # first layer narrower / wider than the input
def test_matches_autograd_point_by_point(nonlinearity, width, n_in):
    cfg = TrialConfig(width=width, depth=4, nonlinearity=nonlinearity, init_scale=2.0, seed=3)
    model = build_model(cfg, n_in, 5).double()
    with torch.no_grad():
        for layer in model.layers:
            layer.bias.normal_(0, 0.5, generator=torch.Generator().manual_seed(1))
    x = torch.randn(12, n_in, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    y = torch.arange(12) % 5
    ours = jacobian_norms(model, x, y, chunk_size=5)  # several chunks
    soft, logit, row = reference(model, x, y)
    torch.testing.assert_close(ours.jacobian, soft, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(ours.logit_jacobian, logit, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(ours.jacobian_y, row, rtol=1e-9, atol=1e-12)
    a = logit_jacobian(model, x)
    torch.testing.assert_close(a.norm(dim=(1, 2)), logit, rtol=1e-9, atol=1e-12)


def test_linear_model_closed_form():
    """h = W x + b: dh/dx = W; d softmax/dx = (diag(p) - p p^T) W."""
    torch.manual_seed(0)
    model = torch.nn.Linear(7, 4).double()
    x = torch.randn(6, 7, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    w = model.weight.detach()
    p = torch.softmax(model(x), 1).detach()
    s = torch.diag_embed(p) - p[:, :, None] * p[:, None, :]
    j = s @ w
    ours = jacobian_norms(model, x, y)  # generic autograd path (not an MLP)
    torch.testing.assert_close(ours.logit_jacobian, torch.full((6,), w.norm().item(), dtype=torch.float64))
    torch.testing.assert_close(ours.jacobian, j.norm(dim=(1, 2)))
    torch.testing.assert_close(ours.jacobian_y, j[torch.arange(6), y].norm(dim=1))


def test_without_labels_and_float32():
    model = build_model(TrialConfig(width=16, depth=3), 10, 3)
    x = torch.randn(9, 10)
    ours = jacobian_norms(model, x)
    assert ours.jacobian_y is None and ours.jacobian.shape == (9,) and ours.jacobian.dtype == torch.float32
    soft, logit, _ = reference(model.double(), x.double(), torch.zeros(9, dtype=torch.long))
    torch.testing.assert_close(ours.jacobian.double(), soft, rtol=1e-4, atol=1e-6)
