"""Counting transitions along a curve (Novak et al. 2018): how often the activation pattern of a net changes.

A hidden unit's *piece* is the interval between kinks of its nonlinearity that holds its pre-activation z
(ReLU: z < 0 | z >= 0; ReLU6: z < 0 | 0 <= z < 6 | z >= 6). The activation pattern is the piece of every
hidden unit; a transition is a change of the pattern along a curve x(t). Smooth nonlinearities have no
kinks: their pattern is the sign of every pre-activation.

This module holds the entry points: count_transitions_ellipse(s) around closed ellipses, count_transitions_path
along open polylines, ellipse_through (the ellipse through three points) and pattern_changes (the pattern
changes between consecutive given points). Piecewise-linear nets are counted exactly, by the kink-event walk
of study.measures.transition_exact; smooth nets by the per-unit sampled count of
study.measures.transition_sampled. Their shared result type and float64 net copy are in
study.measures.transition_core.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from study.measures.transition_core import Net, Tally, TransitionCount
from study.measures.transition_exact import count_exact
from study.measures.transition_sampled import MAX_SAMPLES, chunk_points, count_sampled, ellipse_z1, path_z1
from study.models import MLP


def ellipse_through(p0: Tensor, p1: Tensor, p2: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(c, u, v) of the ellipse x(θ) = c + u cos θ + v sin θ with x(0) = p0, x(2π/3) = p1, x(4π/3) = p2:
    c = (p0 + p1 + p2)/3, u = p0 - c, v = (p1 - c + u/2) · 2/√3."""
    c = (p0 + p1 + p2) / 3
    u = p0 - c
    return c, u, (p1 - c + u / 2) * (2 / math.sqrt(3))


@torch.no_grad()
def pattern_changes(model: MLP, x: Tensor, closed: bool = True) -> int:
    """How many consecutive points of x [P, d] (and x[-1], x[0] if closed) have different activation patterns."""
    net, tally = Net(model), Tally()
    chunk = chunk_points(net)
    for lo in range(0, x.shape[0], chunk):
        tally.add(net.patterns(x[lo:lo + chunk].to(net.device, torch.float64)))
    return tally.total(closed)


@torch.no_grad()
def count_transitions_ellipses(model: MLP, cs: Tensor, us: Tensor, vs: Tensor,
                               max_samples: int = MAX_SAMPLES) -> list[TransitionCount]:
    """count_transitions_ellipse for each of the ellipses cs[b] + us[b] cos θ + vs[b] sin θ ([B, d] each)."""
    net = Net(model)
    w = torch.stack([cs, us, vs], 1).to(net.device, torch.float64)
    if net.kinks is None:
        return [count_sampled(net, ellipse_z1(net, *e), 2 * math.pi, True, max_samples) for e in w]
    return [count_exact(net, "ellipse", e[None], closed=True) for e in w]


def count_transitions_ellipse(model: MLP, c: Tensor, u: Tensor, v: Tensor,
                              max_samples: int = MAX_SAMPLES) -> TransitionCount:
    """Transitions around the closed ellipse x(θ) = c + u cos θ + v sin θ, θ in [0, 2π): exact for
    piecewise-linear nets, sampled and refined up to max_samples points for smooth ones."""
    return count_transitions_ellipses(model, c[None], u[None], v[None], max_samples)[0]


@torch.no_grad()
def count_transitions_path(model: MLP, points: Tensor | list[Tensor],
                           max_samples: int = MAX_SAMPLES) -> TransitionCount:
    """Transitions along the open polyline through points [K, d] (K >= 2): exact for piecewise-linear
    nets (segments x(s) = p_k + (p_{k+1} - p_k) s), sampled and refined for smooth ones."""
    net = Net(model)
    p = (torch.stack(list(points)) if isinstance(points, (list, tuple)) else points).to(net.device, torch.float64)
    if p.shape[0] < 2:
        raise ValueError(f"a path needs at least 2 points, got {p.shape[0]}")
    if net.kinks is None:
        return count_sampled(net, path_z1(net, p), p.shape[0] - 1.0, False, max_samples)
    return count_exact(net, "segment", torch.stack([p[:-1], p[1:] - p[:-1]], 1), closed=False)
