"""What the exact and the sampled transition counts share (study.measures.transition_count has the entry points).

TransitionCount is the result of one curve's count. Net is a float64 copy of an MLP's hidden layers with the
piece of the nonlinearity that holds each pre-activation (the interval between kinks, or the sign for smooth
nonlinearities) and, for piecewise-linear ones, the slope and offset of the nonlinearity on each piece. Tally
sums the changes between consecutive regions or samples of one curve, fed in order: whole patterns, or per unit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from study.models import MLP


@dataclass
class TransitionCount:
    transitions: int
    method: str  # "exact" | "sampled"
    resolution: int  # exact: kink crossings examined; sampled: final m (samples; an open curve has m + 1)
    converged: bool


class Net:
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


@dataclass
class Tally:
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
