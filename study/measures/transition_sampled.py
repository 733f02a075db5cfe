"""Sampled transition count for smooth nets, with its adaptive sample, chunk and memory constants.

Without kinks a layer's output is not affine on a piece, so the exact walk (study.measures.transition_exact)
does not apply. Crossings of different units coincide with probability zero, so the count is the sum over
hidden units of each unit's sign changes along the curve; each unit's are counted between m equally spaced
samples, m doubling from START_SAMPLES (the samples already taken are kept while they fit in REUSE_BYTES,
and each doubling evaluates only the new midpoints; beyond, each level is recounted in chunks) until two
doublings in a row leave the sum unchanged (converged) or m reaches `max_samples`. The first layer is
evaluated on the curve's own low-dimensional parameterization (3 numbers per unit for an ellipse, the
vertices for a polyline), so the input dimension does not enter a sample's cost. Counting per unit, not whole patterns, is what makes this converge at a coarse m: sampling whole
patterns merges crossings of *different* units closer than the spacing, and with thousands of crossings
that needs millions of samples (a 512x3 tanh net on Fashion-MNIST: 2974 per unit at m = 1024, 2956 by
patterns at 2^18). Two crossings of one unit closer than the final spacing still merge: a lower bound.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from study.measures.transition_core import Net, Tally, TransitionCount

START_SAMPLES, MAX_SAMPLES = 256, 2 ** 18
STABLE_DOUBLINGS = 2  # one unchanged doubling is not enough: two crossings 1/3 sample apart can merge twice
SIGN_BYTES = 2 ** 26  # sampled count: unit signs of at most this many bytes per batched pass
SAMPLE_CHUNK = 1024  # sampled count: at most this many points per batched pass (float64 [points, width] blocks)
REUSE_BYTES = 2 ** 24  # sampled count: keep the samples' signs across doublings while they fit in this


def _unit_signs(net: Net, z1: Tensor) -> Tensor:
    """Sign (z >= 0) of every hidden unit's pre-activation, given the first layer's z1 [P, k]: [P, N] bool."""
    out, z = [z1 >= 0], z1
    for w, b in net.layers[1:]:
        z = torch.addmm(b, net.act(z), w.T)
        out.append(z >= 0)
    return torch.cat(out, 1)


def chunk_points(net: Net) -> int:
    """Points per batched pass of the sampled count: at most SAMPLE_CHUNK, and at most SIGN_BYTES of signs."""
    return max(1, min(SAMPLE_CHUNK, SIGN_BYTES // net.n_units))


def _signs_at(net: Net, z1_at: Callable[[Tensor], Tensor], t: Tensor) -> Tensor:
    """_unit_signs at the curve parameters t, chunk_points at a time."""
    chunk = chunk_points(net)
    return torch.cat([_unit_signs(net, z1_at(t[lo:lo + chunk])) for lo in range(0, len(t), chunk)])


def _unit_changes(signs: Tensor, closed: bool) -> int:
    """Sum over units of the sign changes between consecutive rows of signs [P, N] (and last-first if closed)."""
    tally = Tally(per_unit=True)
    tally.add(signs)
    return tally.total(closed)


def _streamed_changes(net: Net, z1_at: Callable[[Tensor], Tensor], span: float, m: int, closed: bool) -> int:
    """_unit_changes of the samples t_i = i span / m, evaluated chunk by chunk and not kept."""
    tally, n, chunk = Tally(per_unit=True), m + (not closed), chunk_points(net)
    for lo in range(0, n, chunk):
        t = torch.arange(lo, min(n, lo + chunk), dtype=torch.float64, device=net.device) * (span / m)
        tally.add(_unit_signs(net, z1_at(t)))
    return tally.total(closed)


def count_sampled(net: Net, z1_at: Callable[[Tensor], Tensor], span: float, closed: bool,
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


def ellipse_z1(net: Net, c: Tensor, u: Tensor, v: Tensor) -> Callable[[Tensor], Tensor]:
    """First-layer pre-activations on the ellipse: z1(θ) = ζ_c + ζ_u cos θ + ζ_v sin θ with ζ = W1 [c, u, v] (+ b1
    on ζ_c), so a sample costs 3 k, not d k, multiply-adds."""
    w0, b0 = net.layers[0]
    zeta = torch.stack([c, u, v]) @ w0.T
    zeta[0] += b0
    return lambda t: torch.stack([torch.ones_like(t), t.cos(), t.sin()], 1) @ zeta


def path_z1(net: Net, points: Tensor) -> Callable[[Tensor], Tensor]:
    """First-layer pre-activations on the polyline, τ in [0, K - 1] (τ = k at vertex k): affine on each segment,
    so z1(τ) interpolates z1 at the two vertices around τ."""
    w0, b0 = net.layers[0]
    at_vertex = torch.addmm(b0, points, w0.T)

    def z1(tau: Tensor) -> Tensor:
        seg = tau.floor().long().clamp(max=points.shape[0] - 2)
        frac = (tau - seg)[:, None]
        return at_vertex[seg] * (1 - frac) + at_vertex[seg + 1] * frac
    return z1
