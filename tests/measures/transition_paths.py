"""Nets and input-space paths for the transition tests: float64 MLPs with non-zero biases, Gaussian
points, and dense samples along ellipses and polylines (the independent side of each comparison)."""

from __future__ import annotations

import math

import torch

from study.models import MLP

F64 = torch.float64


def random_mlp(n_in: int, width: int, depth: int, nonlinearity: str, seed: int, bias_std: float = 0.5) -> MLP:
    """Float64 MLP with N(0, 1/fan_in) weights and N(0, bias_std^2) biases (non-zero, unlike the init)."""
    g = torch.Generator().manual_seed(seed)
    model = MLP(n_in, width, depth, 3, nonlinearity).double()
    with torch.no_grad():
        for layer in model.layers:
            layer.weight.copy_(torch.randn(layer.weight.shape, generator=g, dtype=F64) / math.sqrt(layer.in_features))
            layer.bias.copy_(torch.randn(layer.bias.shape, generator=g, dtype=F64) * bias_std)
    return model


def gaussian(shape: tuple[int, ...], seed: int, std: float = 1.0) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=F64) * std


def ellipse_samples(c: torch.Tensor, u: torch.Tensor, v: torch.Tensor, n: int) -> torch.Tensor:
    theta = torch.arange(n, dtype=F64) * (2 * math.pi / n)
    return c + torch.outer(theta.cos(), u) + torch.outer(theta.sin(), v)


def polyline_samples(points: torch.Tensor, per_segment: int) -> torch.Tensor:
    s = torch.arange(per_segment, dtype=F64)[:, None] / per_segment
    parts = [p + s * (q - p) for p, q in zip(points[:-1], points[1:])]
    return torch.cat(parts + [points[-1:]])
