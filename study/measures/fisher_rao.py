"""Fisher-Rao norm (Liang, Poggio, Rakhlin & Stokes 2019, "Fisher-Rao metric, geometry, and complexity of
neural networks"; in the form of Jiang et al. 2020, "Fantastic Generalization Measures and Where to Find
Them", their "Fisher-Rao norm" measure):

    measure.fisher_rao = (L + 1)^2 E_x [ <theta, grad_theta l(h_theta(x), y)>^2 ]

over the training points with the labels trained on, l the cross-entropy, L = depth (weight layers) and
theta every parameter, biases included (the identity <theta, grad l> = (L + 1) <h, grad_h l> behind the
norm holds for bias-free ReLU nets; with biases and other nonlinearities this is the measure as defined,
without the identity). <theta, grad_theta l> is the derivative of l along theta itself, so one
forward-mode pass (torch.func.jvp with tangent theta) gives it for every point at once, chunk by chunk.
"""

from __future__ import annotations

import math
import warnings

import torch
from torch.func import functional_call, jvp

from study.measures import MeasureContext, MeasureOutput, register


def directional_losses(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """<theta, grad_theta l_i> for every point i of (x, y), [n] (the derivative of l_i along theta)."""
    params = {name: value.detach() for name, value in model.named_parameters()}

    def losses(p):
        return torch.nn.functional.cross_entropy(functional_call(model, p, (x,)), y, reduction="none")
    with warnings.catch_warnings():  # torch's forward AD scripts its decompositions on first use, and warns
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*deprecated", category=FutureWarning)
        _, derivative = jvp(losses, (params,), (params,))
    return derivative


def fisher_rao(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, depth: int, chunk_size: int = 1024) -> float:
    """(depth + 1)^2 times the mean over the points of <theta, grad_theta l>^2, in float64."""
    total = 0.0
    for lo in range(0, x.shape[0], chunk_size):
        total += float(directional_losses(model, x[lo:lo + chunk_size], y[lo:lo + chunk_size]).double().pow(2).sum())
    return (depth + 1) ** 2 * total / x.shape[0] if x.shape[0] else math.nan


@register("fisher_rao", record={"measure.fisher_rao": "float"})
def measure(ctx: MeasureContext) -> MeasureOutput:
    value = fisher_rao(ctx.model, ctx.data.x_train, ctx.data.y_train, ctx.cfg.depth, ctx.chunk_size)
    return MeasureOutput(record={"measure.fisher_rao": value})
