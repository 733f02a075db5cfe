"""The arithmetic of packed trials (study.packed): S nets of one architecture in one flat vector.

The parameters of S nets live in one flat vector, layer-major ([W_1 of every net, b_1 of every net,
W_2, ...]), so layer l of all nets is a contiguous [S, out, in] block; a forward pass of all nets is a
few batched matmuls.
"""

from __future__ import annotations

import math

import torch


class Layout:
    """Shapes of the per-layer blocks of a flat vector holding S nets, layer-major."""

    def __init__(self, sizes: list[int]) -> None:
        self.shapes = []  # per tensor: shape of one net's tensor
        for n_in, n_out in zip(sizes[:-1], sizes[1:]):
            self.shapes += [(n_out, n_in), (n_out,)]
        self.numels = [math.prod(s) for s in self.shapes]

    def split(self, flat: torch.Tensor, count: int) -> list[torch.Tensor]:
        """Views [count, *shape] of every tensor of the flat vector (weights, biases, layer by layer)."""
        parts = torch.split(flat, [count * n for n in self.numels])
        return [p.view(count, *s) for p, s in zip(parts, self.shapes)]

    def select(self, flat: torch.Tensor, count: int, keep: torch.Tensor) -> torch.Tensor:
        """The flat vector of the nets `keep` (indices into the current `count` nets)."""
        return torch.cat([t.index_select(0, keep).reshape(-1) for t in self.split(flat, count)])


def forward(first: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]], rest: list[torch.Tensor], act) -> torch.Tensor:
    """Logits [S, C, B] of S stacked MLPs.

    first: per group of consecutive nets, (W_1 [k, width, d], b_1 [k, width], x), with x [B, d] when the k
    nets share an input (one wide matmul) or [k, B, d] with one input per net (one batched matmul);
    rest: W_2, b_2, ..., W_L, b_L of all nets, [S, out, in] and [S, out]. Activations are kept
    feature-major ([S, width, B]) so every product is a plain (b)mm on contiguous operands."""
    parts = []
    for w1, b1, x in first:
        k, width, d = w1.shape
        if x.dim() == 3:
            parts.append(torch.baddbmm(b1.unsqueeze(2), w1, x.transpose(1, 2)))
        else:
            parts.append(torch.addmm(b1.reshape(k * width, 1), w1.reshape(k * width, d), x.T).view(k, width, -1))
    h = parts[0] if len(parts) == 1 else torch.cat(parts)
    for i in range(0, len(rest), 2):
        h = torch.baddbmm(rest[i + 1].unsqueeze(2), rest[i], act(h))
    return h


def runs(keys: list) -> list[tuple[int, int]]:
    """(start, stop) of the maximal runs of equal consecutive keys."""
    spans, start = [], 0
    for pos in range(1, len(keys) + 1):
        if pos == len(keys) or keys[pos] != keys[start]:
            spans.append((start, pos))
            start = pos
    return spans


def hits(params: list[torch.Tensor], keys: list[int], streams: dict, labels: torch.Tensor, act,
          chunk_size: int = 8192) -> list[int]:
    """Correctly classified training points per net (train.py's accuracy, all nets at once).

    keys: each net's stream (nets with equal consecutive keys share an input); streams[key].x its training
    inputs; labels [S, n] the nets' training labels."""
    n = labels.shape[1]
    correct = torch.zeros(labels.shape[0], dtype=torch.long, device=labels.device)
    with torch.no_grad():
        for start in range(0, n, chunk_size):
            first = [(params[0][a:b], params[1][a:b], streams[keys[a]].x[start:start + chunk_size]) for a, b in runs(keys)]
            correct += (forward(first, params[2:], act).argmax(1) == labels[:, start:start + chunk_size]).sum(1)
    return correct.tolist()
