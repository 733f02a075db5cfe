"""The transitions measure (Novak et al. 2018): transitions and the Jacobian norm along trajectories.

Trajectories of each kind in KINDS: ellipses through three training points (the same class or
different classes), through three test points, a random ellipse, and the polyline of a training image
translated pixel by pixel. Each is counted by study.measures.transition_count (exact for
piecewise-linear nets, per-unit sampling for smooth ones), and the softmax-Jacobian norm is averaged
over trajectory_points points along it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import pandas as pd
import torch
from torch import Tensor

from study.data import translate
from study.measures import MeasureContext, MeasureOutput, register
from study.measures.jacobian import jacobian_norms
from study.measures.transition_count import count_transitions_ellipses, count_transitions_path, ellipse_through

KINDS = ("train_same_class", "train_diff_class", "test", "random", "translation")
SHIFTS = range(-3, 4)  # pixel shifts along the translation trajectory


def _ellipse_at(c: Tensor, u: Tensor, v: Tensor, n: int) -> Callable[[Tensor], Tensor]:
    """Sample i of n equally spaced in θ: x(2π i / n)."""
    def at(i: Tensor) -> Tensor:
        theta = (2 * math.pi / n) * i.to(torch.float64)[:, None]
        return c + u * theta.cos() + v * theta.sin()
    return at


def _path_at(points: Tensor, n: int) -> Callable[[Tensor], Tensor]:
    """Sample i of n equally spaced in the polyline's parameter τ in [0, K - 1] (τ = k at vertex k)."""
    def at(i: Tensor) -> Tensor:
        tau = i.to(torch.float64) * ((points.shape[0] - 1) / max(n - 1, 1))
        seg = tau.floor().long().clamp(max=points.shape[0] - 2)
        return points[seg] + (tau - seg)[:, None] * (points[seg + 1] - points[seg])
    return at


# -- the measure ------------------------------------------------------------------------------

@dataclass
class Trajectory:
    kind: str
    index: int
    points: Tensor  # closed: the 3 points the ellipse passes through; open: the K vertices of the polyline
    closed: bool


def trajectories(ctx: MeasureContext, n: int | None = None) -> list[Trajectory]:
    """n (default cfg.n_trajectories) trajectories of each kind in KINDS, drawn with the seed
    cfg.seed_for("trajectories"). A kind the data cannot supply is left out: translation without image
    structure (image_shape (1, 1, d)), same-class without a class of 3 points, different-class without
    3 classes, test with fewer than 3 test points."""
    n = ctx.cfg.n_trajectories if n is None else n
    g = torch.Generator().manual_seed(ctx.cfg.seed_for("trajectories"))
    x, x_test, y = ctx.data.x_train, ctx.data.x_test, ctx.data.y_train_true.cpu()
    counts = torch.bincount(y)
    eligible, present = torch.nonzero(counts >= 3)[:, 0], torch.nonzero(counts > 0)[:, 0]
    draw = lambda k, items: items[torch.randperm(len(items), generator=g)[:k]].to(x.device)  # noqa: E731
    members = lambda cls: torch.nonzero(y == cls.cpu())[:, 0]  # noqa: E731
    std = x.double().pow(2).sum(1).mean().div(x.shape[1]).sqrt()  # per-coordinate std matched to the data
    images = tuple(ctx.data.image_shape[:2]) != (1, 1)
    out = []
    for kind in KINDS:
        for i in range(n):
            if kind == "train_same_class" and len(eligible):
                points = x[draw(3, members(draw(1, eligible)[0]))]
            elif kind == "train_diff_class" and len(present) >= 3:
                points = x[torch.cat([draw(1, members(cls)) for cls in draw(3, present)])]
            elif kind == "test" and len(x_test) >= 3:
                points = x_test[draw(3, torch.arange(len(x_test)))]
            elif kind == "random":
                points = torch.randn(3, x.shape[1], generator=g, dtype=torch.float64).to(x.device) * std
            elif kind == "translation" and images:
                point = x[draw(1, torch.arange(len(x)))]
                path = torch.cat([translate(point, ctx.data.image_shape, dx) for dx in SHIFTS])
                out.append(Trajectory(kind, i, path, closed=False))
                continue
            else:
                break
            out.append(Trajectory(kind, i, points, closed=True))
    return out


def _samples(traj: Trajectory, n: int) -> Tensor:
    """n points equally spaced in the curve's parameter (θ, or τ along the polyline), float64."""
    points = traj.points.to(torch.float64)
    at = _ellipse_at(*ellipse_through(*points), n) if traj.closed else _path_at(points, n)
    return at(torch.arange(n, device=points.device))


def _length(traj: Trajectory) -> float:
    """Euclidean length: the sum of segment norms, or the perimeter ∫ ||-u sin θ + v cos θ|| dθ by the
    periodic trapezoid rule on 4096 points (exponentially accurate for this smooth periodic integrand)."""
    points = traj.points.to(torch.float64)
    if not traj.closed:
        return float((points[1:] - points[:-1]).norm(dim=1).sum())
    _, u, v = ellipse_through(*points)
    theta = torch.arange(4096, dtype=torch.float64, device=points.device) * (2 * math.pi / 4096)
    sin, cos = theta.sin(), theta.cos()
    speed = (sin ** 2 * (u @ u) + cos ** 2 * (v @ v) - 2 * sin * cos * (u @ v)).clamp_min(0).sqrt()
    return float(speed.mean() * 2 * math.pi)


@register("transitions", record={"measure.transitions_test": "float", "measure.transitions_train": "float",
                                  "measure.transitions_random": "float", "measure.transitions_translation": "float",
                                  "measure.jacobian_trajectory_train": "float",
                                  "measure.jacobian_trajectory_random": "float"},
          trajectories={"transitions": "int",
                        "method": "str",  # exact | sampled
                        "resolution": "int",  # sample intervals m of the final pass (sampled) or kink events examined (exact)
                        "converged": "bool",
                        "length": "float",  # Euclidean length of the trajectory in input space
                        "jacobian_mean": "float",  # mean ||d softmax/dx||_F over trajectory_points points
                        "jacobian_max": "float"})
def measure(ctx: MeasureContext) -> MeasureOutput:
    """Transitions and the softmax-Jacobian norm ||d softmax/dx||_F along each trajectory (one row each);
    per-kind means as trial columns (train: both train kinds together)."""
    groups = {"train": ("train_same_class", "train_diff_class"), "test": ("test",), "random": ("random",),
              "translation": ("translation",)}
    record: dict[str, float | int | None] = {f"measure.transitions_{k}": None for k in groups}
    record.update({"measure.jacobian_trajectory_train": None, "measure.jacobian_trajectory_random": None})
    trajs = trajectories(ctx)
    if not trajs:
        return MeasureOutput(record=record)
    ellipses = [ellipse_through(*t.points.to(torch.float64)) for t in trajs if t.closed]
    ellipse_counts = iter(count_transitions_ellipses(ctx.model, *map(torch.stack, zip(*ellipses)),
                                                           max_samples=ctx.cfg.transition_samples) if ellipses else [])
    dtype = next(ctx.model.parameters()).dtype
    rows = []
    for t in trajs:
        count = next(ellipse_counts) if t.closed else count_transitions_path(ctx.model, t.points,
                                                                                  max_samples=ctx.cfg.transition_samples)
        jac = jacobian_norms(ctx.model, _samples(t, ctx.cfg.trajectory_points).to(dtype), chunk_size=ctx.chunk_size)
        norms = jac.jacobian.double()
        rows.append({"kind": t.kind, "index": t.index, "transitions": count.transitions, "method": count.method,
                     "resolution": count.resolution, "converged": count.converged, "length": _length(t),
                     "jacobian_mean": float(norms.mean()), "jacobian_max": float(norms.max())})
    table = pd.DataFrame(rows)
    for name, kinds in groups.items():
        chosen = table[table.kind.isin(kinds)]
        if len(chosen):
            record[f"measure.transitions_{name}"] = float(chosen.transitions.mean())
            if name in ("train", "random"):
                record[f"measure.jacobian_trajectory_{name}"] = float(chosen.jacobian_mean.mean())
    return MeasureOutput(record=record, trajectories=table)
