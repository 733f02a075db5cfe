"""Shared helpers of the regularizer tests: tiny float64 nets with non-zero biases, finite differences.

(A module, not a conftest.py: tests/test_data.py imports `conftest` by name.)"""

from __future__ import annotations

import torch

from study.config import TrialConfig
from study.models import build_model


def tiny_mlp(nonlinearity: str = "relu", n_in: int = 6, width: int = 12, depth: int = 3, n_out: int = 4,
             seed: int = 0, bias_std: float = 0.5):
    """A float64 MLP from the project's own builder, biases drawn N(0, bias_std^2) (not the zero init)."""
    cfg = TrialConfig(width=width, depth=depth, nonlinearity=nonlinearity, seed=seed)
    model = build_model(cfg, n_in, n_out).double()
    gen = torch.Generator().manual_seed(100 + seed)
    with torch.no_grad():
        for layer in model.layers:
            layer.bias.copy_(torch.randn(layer.bias.shape, generator=gen, dtype=torch.float64) * bias_std)
    return model


def tiny_batch(n: int = 5, n_in: int = 6, n_out: int = 4, seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, n_in, generator=gen, dtype=torch.float64), torch.arange(n) % n_out


def directional_fd_check(model, value, n_directions: int = 3, eps: float = 1e-6,
                         seed: int = 7) -> list[tuple[float, float]]:
    """(autograd directional derivative, central finite difference) of value() along random directions
    in parameter space; value() -> scalar tensor (float64)."""
    params = [p for p in model.parameters()]
    grads = torch.autograd.grad(value(), params, allow_unused=True)  # e.g. dJ/db_last = 0
    grads = [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]
    gen = torch.Generator().manual_seed(seed)
    pairs = []
    for _ in range(n_directions):
        dirs = [torch.randn(p.shape, generator=gen, dtype=p.dtype) for p in params]
        analytic = sum(float((g * d).sum()) for g, d in zip(grads, dirs))
        with torch.no_grad():
            for p, d in zip(params, dirs):
                p.add_(eps * d)
        plus = float(value().detach())
        with torch.no_grad():
            for p, d in zip(params, dirs):
                p.sub_(2 * eps * d)
        minus = float(value().detach())
        with torch.no_grad():
            for p, d in zip(params, dirs):
                p.add_(eps * d)
        pairs.append((analytic, (plus - minus) / (2 * eps)))
    return pairs

