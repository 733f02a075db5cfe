"""Counting transitions along a curve (Novak et al. 2018): how often the activation pattern of a net changes.

A hidden unit's *piece* is the interval between kinks of its nonlinearity that holds its pre-activation z
(ReLU: z < 0 | z >= 0; ReLU6: z < 0 | 0 <= z < 6 | z >= 6). The activation pattern is the piece of every
hidden unit; a transition is a change of the pattern along a curve x(t). Smooth nonlinearities have no
kinks: their pattern is the sign of every pre-activation.

Exact count (piecewise-linear nets, float64). The curves are x(t) = sum_j f_j(t) w_j: an ellipse
x(θ) = c + u cos θ + v sin θ (f = 1, cos, sin; θ in [0, 2π)) or a segment x(s) = p + (q - p) s
(f = 1, s; s in [0, 1]). While the layers below l keep one pattern they are affine (a = s z + o with the
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

Sampled count (smooth nets). Without kinks a layer's output is not affine on a piece, so the walk above
does not apply. Crossings of different units coincide with probability zero, so the count is the sum over
hidden units of each unit's sign changes along the curve; each unit's are counted between m equally spaced
samples, m doubling from START_SAMPLES (the samples already taken are kept while they fit in REUSE_BYTES,
and each doubling evaluates only the new midpoints; beyond, each level is recounted in chunks) until two
doublings in a row leave the sum unchanged (converged) or m reaches `max_samples`. The first layer is evaluated on the curve's own low-dimensional parameterization (3 numbers
per unit for an ellipse, the vertices for a polyline), so the input dimension does not enter a sample's
cost. Counting per unit, not whole patterns, is what makes this converge at a coarse m: sampling whole
patterns merges crossings of *different* units closer than the spacing, and with thousands of crossings
that needs millions of samples (a 512x3 tanh net on Fashion-MNIST: 2974 per unit at m = 1024, 2956 by
patterns at 2^18). Two crossings of one unit closer than the final spacing still merge: a lower bound.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from study.models import MLP

MERGE_TOL = 1e-12  # kink crossings closer than this (radians, or segment fraction) are one transition
CHUNK = 1024  # curve pieces per batched pass: bounds memory to a few CHUNK x 3 x width float64 tensors
START_SAMPLES, MAX_SAMPLES = 256, 2 ** 18
STABLE_DOUBLINGS = 2  # one unchanged doubling is not enough: two crossings 1/3 sample apart can merge twice
SIGN_BYTES = 2 ** 26  # sampled count: unit signs of at most this many bytes per batched pass
SAMPLE_CHUNK = 1024  # sampled count: at most this many points per batched pass (float64 [points, width] blocks)
REUSE_BYTES = 2 ** 24  # sampled count: keep the samples' signs across doublings while they fit in this


@dataclass
class TransitionCount:
    transitions: int
    method: str  # "exact" | "sampled"
    resolution: int  # exact: kink crossings examined; sampled: final m (samples; an open curve has m + 1)
    converged: bool


def ellipse_through(p0: Tensor, p1: Tensor, p2: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(c, u, v) of the ellipse x(θ) = c + u cos θ + v sin θ with x(0) = p0, x(2π/3) = p1, x(4π/3) = p2:
    c = (p0 + p1 + p2)/3, u = p0 - c, v = (p1 - c + u/2) · 2/√3."""
    c = (p0 + p1 + p2) / 3
    u = p0 - c
    return c, u, (p1 - c + u / 2) * (2 / math.sqrt(3))


class _Net:
    """A float64 copy of an MLP's hidden layers, with its nonlinearity's slope and offset on each piece."""

    def __init__(self, model: MLP) -> None:
        if not isinstance(model, MLP):
            raise TypeError(f"transitions need a study.models.MLP, got {type(model).__name__}")
        self.device = model.layers[0].weight.device
        self.layers = [(l.weight.detach().to(torch.float64).clone(), l.bias.detach().to(torch.float64).clone())
                       for l in model.layers[:-1]]
        self.act = model.act
        self.n_units = sum(w.shape[0] for w, _ in self.layers)
        self.kinks = None if model.kinks is None else torch.tensor(model.kinks, dtype=torch.float64, device=self.device)
        if model.kinks is not None:
            edges = [-math.inf, *model.kinks, math.inf]
            pieces = [_affine_piece(model.act, lo, hi) for lo, hi in zip(edges[:-1], edges[1:])]
            self.slope, self.offset = torch.tensor(pieces, dtype=torch.float64, device=self.device).T.contiguous()

    def piece(self, z: Tensor) -> Tensor:
        """Index of the piece that holds z (how many kinks are <= z); the sign for smooth nonlinearities."""
        return (z >= 0).long() if self.kinks is None else torch.bucketize(z, self.kinks, right=True)

    def patterns(self, x: Tensor) -> Tensor:
        """Pieces of all hidden units at the points x [P, d], by a forward pass: [P, N] int8."""
        out = []
        for w, b in self.layers:
            z = torch.addmm(b, x, w.T)
            out.append(self.piece(z).to(torch.int8))
            x = self.act(z)
        return torch.cat(out, 1)


def _affine_piece(act: torch.nn.Module, lo: float, hi: float) -> tuple[float, float]:
    """(slope, offset) of act on (lo, hi), from three inner points; raises if act is not affine there."""
    x = [hi - 3, hi - 2, hi - 1] if lo == -math.inf else [lo + 1, lo + 2, lo + 3] if hi == math.inf else \
        [lo + (hi - lo) * f for f in (0.25, 0.5, 0.75)]
    y = act(torch.tensor(x, dtype=torch.float64)).tolist()
    slope = (y[2] - y[0]) / (x[2] - x[0])
    offset = y[0] - slope * x[0]
    if abs(slope * x[1] + offset - y[1]) > 1e-12 * (1 + abs(y[1])):
        raise ValueError(f"{act} is not affine between its kinks {lo} and {hi}")
    return slope, offset


def _at(kind: str, z: Tensor, t: Tensor) -> Tensor:
    """z(t) = sum_j f_j(t) ζ_j for coefficients z [n, m, k] at times t [n]: [n, k]."""
    one = torch.ones_like(t)
    basis = torch.stack((one, t.cos(), t.sin()) if kind == "ellipse" else (one, t), 1)
    return torch.bmm(basis[:, None, :], z)[:, 0]


def _crossings(net: _Net, kind: str, z: Tensor, t0: Tensor, t1: Tensor) -> tuple[Tensor, Tensor]:
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


@dataclass
class _Tally:
    """Changes between consecutive regions (or samples) of one curve, fed in order: rows whose patterns
    differ, or with per_unit the number of units that differ, summed over the pairs."""
    per_unit: bool = False
    count: int = 0
    events: int = 0
    first: Tensor | None = None
    last: Tensor | None = None

    def _changes(self, a: Tensor, b: Tensor) -> int:
        differ = a != b
        return int(differ.sum() if self.per_unit else differ.any(-1).sum())

    def add(self, pattern: Tensor) -> None:
        self.first = pattern[0] if self.first is None else self.first
        seq = pattern if self.last is None else torch.cat([self.last[None], pattern])
        self.count += self._changes(seq[1:], seq[:-1])
        self.last = pattern[-1]

    def total(self, closed: bool) -> int:
        """The changes so far, plus those from the last region back to the first on a closed curve."""
        return self.count + (self._changes(self.first, self.last) if closed else 0)


def _descend(net: _Net, kind: str, layer: int, t0: Tensor, t1: Tensor, z: Tensor, prefix: Tensor,
             tally: _Tally) -> None:
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
def _exact(net: _Net, kind: str, w: Tensor, closed: bool) -> TransitionCount:
    """Exact count along one curve made of pieces w [n, m, d], in order (an ellipse: one piece c, u, v
    over θ in (0, 2π); a polyline: segments p, q - p over s in (0, 1))."""
    tally = _Tally()
    w0, b0 = net.layers[0]
    for lo in range(0, w.shape[0], CHUNK):
        z = torch.matmul(w[lo:lo + CHUNK], w0.T)
        z[:, 0] += b0
        n = z.shape[0]
        _descend(net, kind, 0, w.new_zeros(n), w.new_full((n,), 2 * math.pi if kind == "ellipse" else 1.0), z,
                 torch.zeros(n, 0, dtype=torch.int8, device=w.device), tally)
    return TransitionCount(tally.total(closed), "exact", tally.events, True)


def _unit_signs(net: _Net, z1: Tensor) -> Tensor:
    """Sign (z >= 0) of every hidden unit's pre-activation, given the first layer's z1 [P, k]: [P, N] bool."""
    out, z = [z1 >= 0], z1
    for w, b in net.layers[1:]:
        z = torch.addmm(b, net.act(z), w.T)
        out.append(z >= 0)
    return torch.cat(out, 1)


def _chunk_points(net: _Net) -> int:
    """Points per batched pass of the sampled count: at most SAMPLE_CHUNK, and at most SIGN_BYTES of signs."""
    return max(1, min(SAMPLE_CHUNK, SIGN_BYTES // net.n_units))


def _signs_at(net: _Net, z1_at: Callable[[Tensor], Tensor], t: Tensor) -> Tensor:
    """_unit_signs at the curve parameters t, _chunk_points at a time."""
    chunk = _chunk_points(net)
    return torch.cat([_unit_signs(net, z1_at(t[lo:lo + chunk])) for lo in range(0, len(t), chunk)])


def _unit_changes(signs: Tensor, closed: bool) -> int:
    """Sum over units of the sign changes between consecutive rows of signs [P, N] (and last-first if closed)."""
    tally = _Tally(per_unit=True)
    tally.add(signs)
    return tally.total(closed)


def _streamed_changes(net: _Net, z1_at: Callable[[Tensor], Tensor], span: float, m: int, closed: bool) -> int:
    """_unit_changes of the samples t_i = i span / m, evaluated chunk by chunk and not kept."""
    tally, n, chunk = _Tally(per_unit=True), m + (not closed), _chunk_points(net)
    for lo in range(0, n, chunk):
        t = torch.arange(lo, min(n, lo + chunk), dtype=torch.float64, device=net.device) * (span / m)
        tally.add(_unit_signs(net, z1_at(t)))
    return tally.total(closed)


def _sampled(net: _Net, z1_at: Callable[[Tensor], Tensor], span: float, closed: bool,
             max_samples: int) -> TransitionCount:
    """Sampled count along a curve with parameter t in [0, span] (first-layer pre-activations z1_at(t)):
    the sum over hidden units of each unit's sign changes between the samples t_i = i span / m
    (i = 0..m, or 0..m-1 on a closed curve). m doubles from START_SAMPLES until STABLE_DOUBLINGS
    doublings in a row leave the count unchanged (converged) or m would pass max_samples (not
    converged). While the signs of the samples after the next doubling fit in REUSE_BYTES they are kept
    and each doubling evaluates only the m new midpoints; from the first level beyond (wide or deep nets
    that converge late), every level is recounted chunk by chunk and not kept: at most twice the
    arithmetic, and at most 2 REUSE_BYTES of signs (kept, midpoints and their interleaving) at any time."""
    m = min(START_SAMPLES, max_samples)
    fits = lambda m: (2 * m + 1) * net.n_units <= REUSE_BYTES  # noqa: E731  signs after doubling m
    grid = lambda n, step: torch.arange(*n, dtype=torch.float64, device=net.device) * step  # noqa: E731
    signs = _signs_at(net, z1_at, grid((m + (not closed),), span / m)) if fits(m) else None
    count = _unit_changes(signs, closed) if signs is not None else _streamed_changes(net, z1_at, span, m, closed)
    stable = 0
    while 2 * m <= max_samples:
        previous = count
        if signs is not None and fits(m):
            mid = _signs_at(net, z1_at, grid((1, 2 * m, 2), span / (2 * m)))
            both = signs.new_empty((len(signs) + len(mid), signs.shape[1]))
            both[0::2], both[1::2] = signs, mid
            signs, m = both, 2 * m
            del mid, both
            count = _unit_changes(signs, closed)
        else:
            signs, m = None, 2 * m
            count = _streamed_changes(net, z1_at, span, m, closed)
        stable = stable + 1 if count == previous else 0
        if stable == STABLE_DOUBLINGS:
            return TransitionCount(count, "sampled", m, True)
    return TransitionCount(count, "sampled", m, False)


def _ellipse_z1(net: _Net, c: Tensor, u: Tensor, v: Tensor) -> Callable[[Tensor], Tensor]:
    """First-layer pre-activations on the ellipse: z1(θ) = ζ_c + ζ_u cos θ + ζ_v sin θ with ζ = W1 [c, u, v] (+ b1
    on ζ_c), so a sample costs 3 k, not d k, multiply-adds."""
    w0, b0 = net.layers[0]
    zeta = torch.stack([c, u, v]) @ w0.T
    zeta[0] += b0
    return lambda t: torch.stack([torch.ones_like(t), t.cos(), t.sin()], 1) @ zeta


def _path_z1(net: _Net, points: Tensor) -> Callable[[Tensor], Tensor]:
    """First-layer pre-activations on the polyline, τ in [0, K - 1] (τ = k at vertex k): affine on each segment,
    so z1(τ) interpolates z1 at the two vertices around τ."""
    w0, b0 = net.layers[0]
    at_vertex = torch.addmm(b0, points, w0.T)

    def z1(tau: Tensor) -> Tensor:
        seg = tau.floor().long().clamp(max=points.shape[0] - 2)
        frac = (tau - seg)[:, None]
        return at_vertex[seg] * (1 - frac) + at_vertex[seg + 1] * frac
    return z1


@torch.no_grad()
def pattern_changes(model: MLP, x: Tensor, closed: bool = True) -> int:
    """How many consecutive points of x [P, d] (and x[-1], x[0] if closed) have different activation patterns."""
    net, tally = _Net(model), _Tally()
    chunk = _chunk_points(net)
    for lo in range(0, x.shape[0], chunk):
        tally.add(net.patterns(x[lo:lo + chunk].to(net.device, torch.float64)))
    return tally.total(closed)


@torch.no_grad()
def count_transitions_ellipses(model: MLP, cs: Tensor, us: Tensor, vs: Tensor,
                               max_samples: int = MAX_SAMPLES) -> list[TransitionCount]:
    """count_transitions_ellipse for each of the ellipses cs[b] + us[b] cos θ + vs[b] sin θ ([B, d] each)."""
    net = _Net(model)
    w = torch.stack([cs, us, vs], 1).to(net.device, torch.float64)
    if net.kinks is None:
        return [_sampled(net, _ellipse_z1(net, *e), 2 * math.pi, True, max_samples) for e in w]
    return [_exact(net, "ellipse", e[None], closed=True) for e in w]


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
    net = _Net(model)
    p = (torch.stack(list(points)) if isinstance(points, (list, tuple)) else points).to(net.device, torch.float64)
    if p.shape[0] < 2:
        raise ValueError(f"a path needs at least 2 points, got {p.shape[0]}")
    if net.kinks is None:
        return _sampled(net, _path_z1(net, p), p.shape[0] - 1.0, False, max_samples)
    return _exact(net, "segment", torch.stack([p[:-1], p[1:] - p[:-1]], 1), closed=False)
