"""Exact transition count for piecewise-linear nets (float64): the kink-event walk.

The curves are x(t) = sum_j f_j(t) w_j: an ellipse x(θ) = c + u cos θ + v sin θ (f = 1, cos, sin;
θ in [0, 2π)) or a segment x(s) = p + (q - p) s (f = 1, s; s in [0, 1]). While the layers below l keep one pattern they are affine (a = s z + o with the
slope s and offset o of each unit's piece), so a layer-l pre-activation is z(t) = sum_j f_j(t) ζ_j, with
ζ from one forward pass of the w_j (biases and offsets on the constant term only). On an ellipse
z(θ) = α + β cos θ + γ sin θ = α + R cos(θ - φ), R = sqrt(β² + γ²), φ = atan2(γ, β), which reaches a
kink k at θ = φ ± arccos((k - α)/R); on a segment z = α + β s reaches it at s = (k - α)/β.
This is the walk "jump to the next kink crossing, re-evaluate the pattern just past it, recompute the
coefficients above, repeat", done breadth-first so that the forward passes of all linear regions are
batched: layer by layer, every piece of the curve on which the layers below keep one pattern is cut at
the crossings of this layer's units, the layer's pattern on each new piece is read at its midpoint, and
one batched pass gives the next layer's coefficients on all pieces. After the last hidden layer the
pieces are the linear regions met along the curve, in order; a transition is a pair of consecutive
regions with different patterns, so crossings closer than MERGE_TOL count once and a tangency that
changes nothing counts zero. No sampling resolution enters.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from study.measures.transition_core import Net, Tally, TransitionCount

MERGE_TOL = 1e-12  # kink crossings closer than this (radians, or segment fraction) are one transition
CHUNK = 1024  # curve pieces per batched pass: bounds memory to a few CHUNK x 3 x width float64 tensors


def _at(kind: str, z: Tensor, t: Tensor) -> Tensor:
    """z(t) = sum_j f_j(t) ζ_j for coefficients z [n, m, k] at times t [n]: [n, k]."""
    one = torch.ones_like(t)
    basis = torch.stack((one, t.cos(), t.sin()) if kind == "ellipse" else (one, t), 1)
    return torch.bmm(basis[:, None, :], z)[:, 0]


def _crossings(net: Net, kind: str, z: Tensor, t0: Tensor, t1: Tensor) -> tuple[Tensor, Tensor]:
    """Every time inside (t0, t1) at which a unit reaches a kink, as (piece index, time) pairs, for pieces
    with coefficients z [n, m, k]. Only the (piece, unit, kink) triples that |z(t) - z(mid)| <=
    max|z'| |t - mid| leaves possible are solved."""
    speed = torch.hypot(z[:, 1], z[:, 2]) if kind == "ellipse" else z[:, 1].abs()  # max |dz/dt|
    reach = speed * ((t1 - t0) / 2)[:, None] * 1.001 + 1e-12
    gap = net.kinks[:, None, None] - _at(kind, z, (t0 + t1) / 2)  # [K, n, k]
    kink, i, j = torch.nonzero(gap.abs() <= reach).unbind(1)
    alpha, level = z[i, 0, j], net.kinks[kink]
    if kind == "ellipse":
        beta, gamma = z[i, 1, j], z[i, 2, j]
        ratio = (level - alpha) / torch.hypot(beta, gamma)
        phi, spread = torch.atan2(gamma, beta), torch.acos(ratio.clamp(-1, 1))
        times = torch.remainder(torch.cat([phi - spread, phi + spread]), 2 * math.pi)
        i, ok = torch.cat([i, i]), torch.cat([ratio.abs() <= 1] * 2)
    else:
        times, ok = (level - alpha) / z[i, 1, j], torch.ones_like(i, dtype=torch.bool)
    inside = ok & (times > t0[i]) & (times < t1[i])
    return i[inside], times[inside]


def _split(t0: Tensor, t1: Tensor, i: Tensor, times: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Cut the pieces (t0, t1) at the (piece, time) pairs: (parent, start, end) of the new pieces, in order.
    A cut within MERGE_TOL of the previous cut or of the end is simultaneous with it: dropped."""
    parent = torch.cat([torch.arange(len(t0), device=t0.device), i])
    start = torch.cat([t0, times])
    order = torch.argsort(start, stable=True)
    order = order[torch.argsort(parent[order], stable=True)]
    parent, start = parent[order], start[order]
    first = torch.ones_like(parent, dtype=torch.bool)
    first[1:] = parent[1:] != parent[:-1]
    keep = first.clone()
    keep[1:] |= (start[1:] - start[:-1] > MERGE_TOL) & (t1[parent[1:]] - start[1:] > MERGE_TOL)
    parent, start, first = parent[keep], start[keep], first[keep]
    end = t1[parent].clone()
    inner = ~torch.cat([first[1:], first.new_ones(1)])  # not the last piece of its parent: ends at the next start
    end[inner] = start[1:][inner[:-1]]
    return parent, start, end


def _descend(net: Net, kind: str, layer: int, t0: Tensor, t1: Tensor, z: Tensor, prefix: Tensor,
             tally: Tally) -> None:
    """Pieces (t0, t1) on which layers < `layer` keep the pattern `prefix` [n, N_<layer], with this layer's
    coefficients z [n, m, k]: cut them at this layer's crossings, read its pattern at each new piece's
    midpoint and go on with the next layer (or hand the regions to the tally after the last)."""
    i, times = _crossings(net, kind, z, t0, t1)
    tally.events += len(i)
    parent, start, end = _split(t0, t1, i, times)
    for lo in range(0, len(parent), CHUNK):
        sel, s0, s1 = parent[lo:lo + CHUNK], start[lo:lo + CHUNK], end[lo:lo + CHUNK]
        zs = z[sel]
        piece = net.piece(_at(kind, zs, (s0 + s1) / 2))
        pattern = torch.cat([prefix[sel], piece.to(torch.int8)], 1)
        if layer + 1 == len(net.layers):
            tally.add(pattern)
            continue
        a = zs * net.slope[piece][:, None, :]  # this layer's output on the piece: s z + o
        a[:, 0] += net.offset[piece]
        w, b = net.layers[layer + 1]
        z_next = torch.matmul(a, w.T)
        z_next[:, 0] += b
        _descend(net, kind, layer + 1, s0, s1, z_next, pattern, tally)


@torch.no_grad()
def count_exact(net: Net, kind: str, w: Tensor, closed: bool) -> TransitionCount:
    """Exact count along one curve made of pieces w [n, m, d], in order (an ellipse: one piece c, u, v
    over θ in (0, 2π); a polyline: segments p, q - p over s in (0, 1))."""
    tally = Tally()
    w0, b0 = net.layers[0]
    for lo in range(0, w.shape[0], CHUNK):
        z = torch.matmul(w[lo:lo + CHUNK], w0.T)
        z[:, 0] += b0
        n = z.shape[0]
        _descend(net, kind, 0, w.new_zeros(n), w.new_full((n,), 2 * math.pi if kind == "ellipse" else 1.0), z,
                 torch.zeros(n, 0, dtype=torch.int8, device=w.device), tally)
    return TransitionCount(tally.total(closed), "exact", tally.events, True)
