"""Fully-connected networks with biases, as in the study: h(x) = W_k s(W_{k-1} s(... s(W_1 x + b_1) ...)) + b_k.

Initialization: weights ~ N(0, (init_scale / sqrt(fan_in))^2), biases = 0. The 1/sqrt(fan_in)
("LeCun") default keeps the pre-activation variance of every layer equal to that of the input
for a linear net at init_scale 1, independent of width, so one multiplier grid
{0.5, 1, 4, 8} x default (the study's) means the same thing for every nonlinearity and width.
(He init, sqrt(2/fan_in), is init_scale = sqrt(2) for ReLU.)
"""

from __future__ import annotations

import math

import torch
from torch import nn

from study.config import TrialConfig
from study.nonlinearities import KINKS, TABLE

def activation(name: str) -> nn.Module:
    """The torch module of a nonlinearity name (the table in study.nonlinearities)."""
    return TABLE[name].build()


class MLP(nn.Module):
    """depth weight layers: `layers[i]` is nn.Linear, `act` the shared elementwise nonlinearity."""

    def __init__(self, n_in: int, width: int, depth: int, n_out: int, nonlinearity: str) -> None:
        super().__init__()
        sizes = [n_in] + [width] * (depth - 1) + [n_out]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.act = activation(nonlinearity)
        self.nonlinearity = nonlinearity

    @property
    def kinks(self) -> tuple[float, ...] | None:
        return KINKS[self.nonlinearity]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers[:-1]:
            x = self.act(layer(x))
        return self.layers[-1](x)

    def preactivations(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Pre-activations of every hidden layer (not the logits), each [batch, width]."""
        out = []
        for layer in self.layers[:-1]:
            z = layer(x)
            out.append(z)
            x = self.act(z)
        return out

    def n_neurons(self) -> int:
        return sum(layer.out_features for layer in self.layers[:-1])


def init_weights(model: MLP, init_scale: float, generator: torch.Generator) -> None:
    """W ~ N(0, (init_scale / sqrt(fan_in))^2), b = 0, drawn on the CPU so every device gets the same net."""
    with torch.no_grad():
        for layer in model.layers:
            std = init_scale / math.sqrt(layer.in_features)
            weight = torch.randn(layer.weight.shape, generator=generator, dtype=torch.float32) * std
            layer.weight.copy_(weight)
            layer.bias.zero_()


def build_model(cfg: TrialConfig, n_in: int, n_out: int, device: torch.device | str = "cpu") -> MLP:
    """The trial's network, initialized from the config's init seed (depends on seed only)."""
    model = MLP(n_in, cfg.width, cfg.depth, n_out, cfg.nonlinearity)
    init_weights(model, cfg.init_scale, torch.Generator().manual_seed(cfg.seed_for("init")))
    return model.to(device)


def count_parameters(n_in: int, width: int, depth: int, n_out: int) -> int:
    sizes = [n_in] + [width] * (depth - 1) + [n_out]
    return sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))
