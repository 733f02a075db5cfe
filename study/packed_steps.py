"""The training state and steps of one pack (study.packed.train_packed): S nets in one flat vector.

A `Pack` holds the nets still training together (`active`, ordered by minibatch stream), their packed
parameters `theta` (study.packed_layout's layer-major layout), their labels, their streams and the
packed optimizer (study.packed_optim). `Pack.step` is one training step of all of them: draw each
stream's minibatch as study.train does, run the first layer per group of nets sharing an input
(`FirstLayer`) and the other layers batched, add each net's penalty, take the gradients and update.
`Pack.drop_non_finite`, `Pack.evaluate` and `Pack.finish` are the accuracy-check bookkeeping: a net
that diverges, reaches its target or runs out of steps is copied out into its MLP (`Pack.leave`) with
its TrainOutcome, and the pack goes on with the others.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from study.config import TrialConfig, step_points
from study.data import Dataset, augment
from study.datasets import TABLE as DATASET_TABLE
from study.models import MLP
from study.packed_layout import Layout, forward, hits, runs
from study.packed_optim import PackedOptimizer
from study.train import Minibatches, Penalty, TrainOutcome


@dataclass
class PackedNet:
    """One net of a pack: the caller's model and config, its minibatch stream, its regularizer, its results."""

    model: MLP
    cfg: TrialConfig
    stream: int  # cfg.seed_for("train"): nets with equal streams draw the same minibatches
    penalty: Penalty | None
    perturb: Callable[[torch.Tensor], torch.Tensor] | None
    accuracy: float = 0.0  # training accuracy at the last check
    outcome: TrainOutcome | None = None  # set when the net leaves the pack


@dataclass
class FirstLayer:
    """First-layer leaves of the consecutive active nets start..stop-1, which share one input in this step."""

    start: int
    stop: int
    x: torch.Tensor  # [B, d] shared by the nets (one wide matmul), or [k, B, d] one per net (one bmm)
    weight: torch.Tensor  # [k, width, d], a leaf of this step's graph
    bias: torch.Tensor  # [k, width], a leaf of this step's graph

    def of(self, pos: int) -> list[torch.Tensor]:
        """[W_1, b_1] of the net at active position `pos` (views into the leaves)."""
        return [self.weight[pos - self.start], self.bias[pos - self.start]]


class PenaltyCall(torch.nn.Module):
    """Calls a penalty on `net`, so that torch.func.functional_call can swap in one packed net's parameters."""

    def __init__(self, net: MLP) -> None:
        super().__init__()
        self.net = net
        self.penalty: Penalty | None = None

    def forward(self, x: torch.Tensor, y: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """The penalty of `net` (holding the swapped-in parameters) on this batch."""
        return self.penalty(self.net, x, y, logits)


def net_penalty(template: PenaltyCall, penalty: Penalty | None, params: list[torch.Tensor], x: torch.Tensor,
                y: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """One net's penalty, computed on a template MLP holding that net's parameters (views into the pack's leaves)."""
    if penalty is None:
        return logits.new_zeros(())
    template.penalty = penalty
    names = [f"net.layers.{l}.{kind}" for l in range(len(params) // 2) for kind in ("weight", "bias")]
    return torch.func.functional_call(template, dict(zip(names, params)), (x, y, logits))


def _model_tensors(model: MLP) -> list[torch.Tensor]:
    """W_1, b_1, ..., W_L, b_L of an MLP, in the packed layout's order."""
    return [t for layer in model.layers for t in (layer.weight, layer.bias)]


class Pack:
    """The nets of one pack still training together, and their packed state (see the module docstring)."""

    def __init__(self, models: list[MLP], datas: list[Dataset], cfgs: list[TrialConfig],
                 penalties: list[Penalty | None], grouped_max: int) -> None:
        self.start_time = time.perf_counter()
        self.cfg, self.count, self.grouped_max = cfgs[0], len(cfgs), grouped_max
        data0, model0 = datas[0], models[0]
        self.device, self.n = data0.x_train.device, data0.x_train.shape[0]
        batch = step_points(self.cfg, self.n)  # L-BFGS does not pack: full batch or batch_size >= n
        self.full_batch = batch == self.n
        self.image_shape, self.flip, self.act = data0.image_shape, DATASET_TABLE[data0.name].flip, model0.act
        self.layout = Layout([model0.layers[0].in_features] + [layer.out_features for layer in model0.layers])
        self.nets = [PackedNet(model, cfg, cfg.seed_for("train"), penalty, getattr(penalty, "perturb", None))
                     for model, cfg, penalty in zip(models, cfgs, penalties)]
        # Nets ordered by stream, so that the nets sharing a minibatch sequence are a contiguous block.
        seeds = [net.stream for net in self.nets]
        order = sorted(range(self.count), key=lambda i: seeds.index(seeds[i]))
        self.active = [self.nets[i] for i in order]
        self.streams: dict[int, Minibatches] = {}
        for i in order:
            self.streams.setdefault(seeds[i], Minibatches(seeds[i], datas[i].x_train, batch, self.full_batch))
        self.labels = torch.stack([datas[i].y_train for i in order])  # [S, n], row = position in `active`
        self.theta = torch.cat([torch.stack([t.detach() for t in per_net]).reshape(-1)
                                for per_net in zip(*(_model_tensors(net.model) for net in self.active))])
        self.optimizer = PackedOptimizer(self.cfg.optimizer, [net.cfg.lr for net in self.active], self.theta,
                                         self.layout)
        self.template = None
        if any(p is not None for p in penalties):
            self.template = PenaltyCall(MLP(self.layout.shapes[0][1], self.cfg.width, self.cfg.depth,
                                            self.layout.shapes[-1][0], self.cfg.nonlinearity).to(self.device))
        self.steps = 0

    # -- one step ---------------------------------------------------------------------------------

    def _draw(self) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Each active net's (perturbed) input batch and the labels [S, B], drawn per stream in train.py's order."""
        drawn: dict[int, tuple[torch.Tensor | None, torch.Tensor]] = {}  # stream -> (rows or None, inputs)
        for seed, s in self.streams.items():
            index = s.next_index()
            xb = s.x if index is None else s.x.index_select(0, index)
            if self.cfg.augment:
                xb = augment(xb, self.image_shape, self.cfg.augment_shift, self.flip, s.gen)
            drawn[seed] = (index, xb)
        inputs = [drawn[net.stream][1] for net in self.active]
        inputs = [x if net.perturb is None else net.perturb(x) for x, net in zip(inputs, self.active)]
        yb = []
        for a, b in runs([net.stream for net in self.active]):
            index = drawn[self.active[a].stream][0]
            yb.append(self.labels[a:b] if index is None else self.labels[a:b].index_select(1, index))
        return inputs, yb[0] if len(yb) == 1 else torch.cat(yb)

    def _first_layers(self, inputs: list[torch.Tensor], w1: torch.Tensor, b1: torch.Tensor) -> list[FirstLayer]:
        """First-layer leaves per group of nets sharing an input, or one group over stacked inputs.

        A leaf per group, not one sliced leaf: a slice of a leaf would zero-fill its whole gradient in
        backward, once per group. With more than `grouped_max` minibatches, one bmm beats a matmul each."""
        spans = runs([id(x) for x in inputs])  # nets that share an input: one wide matmul
        xs = [inputs[a] for a, _ in spans]
        if len(spans) > self.grouped_max and not self.full_batch:
            spans, xs = [(0, len(self.active))], [torch.stack(inputs)]
        return [FirstLayer(a, b, x, w1[a:b].detach().requires_grad_(True), b1[a:b].detach().requires_grad_(True))
                for (a, b), x in zip(spans, xs)]

    def _penalties(self, firsts: list[FirstLayer], rest: list[torch.Tensor], inputs: list[torch.Tensor],
                   yb: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """[S] each active net's penalty on its own parameters (zero for a net without one)."""
        first_of = [group for group in firsts for _ in range(group.start, group.stop)]  # per active position
        return torch.stack([net_penalty(self.template, net.penalty, first_of[pos].of(pos) + [t[pos] for t in rest],
                                        inputs[pos], yb[pos], logits[pos].T)
                            for pos, net in enumerate(self.active)])

    @staticmethod
    def _gradients(loss: torch.Tensor, firsts: list[FirstLayer], rest: list[torch.Tensor]) -> list[torch.Tensor]:
        """Gradients of `loss` in the layout's order ([S, *shape] per tensor), first-layer groups joined."""
        grads = torch.autograd.grad(loss, [g.weight for g in firsts] + [g.bias for g in firsts] + rest)
        k = len(firsts)
        join = lambda gs: gs[0] if len(gs) == 1 else torch.cat(gs)  # noqa: E731
        return [join(grads[:k]), join(grads[k:2 * k])] + list(grads[2 * k:])

    def step(self) -> None:
        """One training step of every active net; a net with a non-finite loss leaves unchanged ("diverged")."""
        inputs, yb = self._draw()
        params = self.layout.split(self.theta, len(self.active))
        firsts = self._first_layers(inputs, params[0], params[1])
        rest = [t.detach().requires_grad_(True) for t in params[2:]]
        logits = forward([(g.weight, g.bias, g.x) for g in firsts], rest, self.act)  # [S, C, B]
        losses = F.cross_entropy(logits, yb, reduction="none").mean(1)
        if self.template is not None:
            losses = losses + self._penalties(firsts, rest, inputs, yb, logits)
        finite = torch.isfinite(losses)
        self.steps += 1
        keep = None if bool(finite.all()) else finite.nonzero().flatten()
        grads = None
        if keep is None or len(keep):  # nets with a non-finite loss stop here, unchanged (as in train.py)
            grads = self._gradients(losses.sum() if keep is None else losses[keep].sum(), firsts, rest)
        if keep is not None:
            self.leave((~finite).nonzero().flatten().tolist(), "diverged",
                       f"non-finite training loss at step {self.steps}")
            if not self.active:
                return
            grads = [g.index_select(0, keep) for g in grads]
        self.optimizer.step(self.layout, self.theta, grads)

    # -- accuracy checks and leaving ----------------------------------------------------------------

    def leave(self, positions: list[int], status: str, message: str) -> None:
        """Copy the nets at these active positions out into their models, record outcomes, drop them from the pack."""
        if not positions:
            return
        params = self.layout.split(self.theta, len(self.active))
        seconds = (time.perf_counter() - self.start_time) / self.count
        with torch.no_grad():
            for pos in positions:
                net = self.active[pos]
                for t, p in zip(params, _model_tensors(net.model)):
                    p.copy_(t[pos])
                net.model.eval()
                net.outcome = TrainOutcome(status, self.steps, net.accuracy, seconds,
                                           message.format(acc=net.accuracy, target=net.cfg.target_accuracy))
        gone = set(positions)
        keep = torch.tensor([p for p in range(len(self.active)) if p not in gone], dtype=torch.long, device=self.device)
        self.theta = self.layout.select(self.theta, len(self.active), keep)
        self.optimizer.select(self.layout, len(self.active), keep)
        self.labels = self.labels.index_select(0, keep)
        self.active = [self.active[p] for p in keep.tolist()]
        # a stream whose nets have all left stops drawing (alone, its generator would stop too)
        self.streams = {seed: s for seed, s in self.streams.items() if any(net.stream == seed for net in self.active)}

    def drop_non_finite(self) -> None:
        """Nets with non-finite weights leave ("diverged"), as in train.py."""
        params = self.layout.split(self.theta, len(self.active))
        finite_nets = torch.stack([torch.isfinite(t.reshape(len(self.active), -1)).all(1) for t in params]).all(0)
        self.leave((~finite_nets).nonzero().flatten().tolist(), "diverged",
                   f"non-finite loss or weights by step {self.steps}")

    def evaluate(self) -> None:
        """Each active net's accuracy on its own training set; nets at their target accuracy leave ("ok")."""
        correct = hits(self.layout.split(self.theta, len(self.active)), [net.stream for net in self.active],
                       self.streams, self.labels, self.act)
        for pos, net in enumerate(self.active):
            net.accuracy = correct[pos] / max(1, self.n)
        self.leave([pos for pos, net in enumerate(self.active) if net.accuracy >= net.cfg.target_accuracy], "ok", "")

    def finish(self) -> list[TrainOutcome]:
        """The nets still active leave ("not_fit"); every net's outcome, in the caller's order."""
        self.leave(list(range(len(self.active))), "not_fit",
                   "train accuracy {acc:.4f} < {target} after " + f"{self.steps} steps")
        return [net.outcome for net in self.nets]
