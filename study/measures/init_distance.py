"""Distance from initialization (Jiang et al. 2020, "Fantastic Generalization Measures and Where to Find Them",
their "distance to initialization" measures; Nagarajan & Kolter 2019, "Generalization in deep networks:
the role of distance from initialization").

With theta the trained parameters and theta_0 those at initialization (regenerated from the config:
study.models.build_model draws them from the init seed, the same net the trial started from, whose hash
the row records as model.init_sha256):

    measure.dist_init            ||theta - theta_0||_2     over every parameter, biases included
    measure.frob_distance_sum    sum_l ||W_l - W_l^0||_F    over the weight matrices
"""

from __future__ import annotations

import math

import torch

from study.measures import MeasureContext, MeasureOutput, register
from study.models import build_model


def initial_model(ctx: MeasureContext) -> torch.nn.Module:
    """The trial's net at initialization, on the CPU."""
    return build_model(ctx.cfg, ctx.data.n_features, ctx.data.n_classes, "cpu")


def init_distances(model: torch.nn.Module, initial: torch.nn.Module) -> tuple[float, float]:
    """(||theta - theta_0||_2, sum over weight matrices of ||W_l - W_l^0||_F), in float64."""
    total, frobenius = 0.0, 0.0
    start = initial.state_dict()
    for name, value in model.state_dict().items():
        diff = value.detach().to("cpu", torch.float64) - start[name].to(torch.float64)
        squared = float(diff.pow(2).sum())
        total += squared
        if name.endswith("weight"):
            frobenius += math.sqrt(squared)
    return math.sqrt(total), frobenius


@register("init_distance", record={"measure.dist_init": "float", "measure.frob_distance_sum": "float"})
def measure(ctx: MeasureContext) -> MeasureOutput:
    distance, frobenius = init_distances(ctx.model, initial_model(ctx))
    return MeasureOutput(record={"measure.dist_init": distance, "measure.frob_distance_sum": frobenius})
