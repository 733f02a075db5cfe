"""Optimizer updates for packed trials (study.packed): S nets' parameters in one flat tensor, a per-net lr.

Each update is exactly torch.optim's for each net alone (SGD, momentum 0.9, Adam, RMSprop with
torch's defaults, as study.train.make_optimizer builds them): elementwise updates pack exactly.
`layout` is study.packed's parameter layout (numels, split, select).
"""

from __future__ import annotations

import math

import torch
from torch.optim.adam import adam as adam_update
from torch.optim.sgd import sgd as sgd_update

from study.config import ConfigError

PACKABLE_OPTIMIZERS = ("sgd", "momentum", "adam", "rmsprop")
ADAM_BETAS, ADAM_EPS = (0.9, 0.999), 1e-8  # torch.optim.Adam's defaults, as study.train.make_optimizer uses
RMSPROP_ALPHA, RMSPROP_EPS = 0.99, 1e-8  # torch.optim.RMSprop's defaults
MOMENTUM = 0.9  # study.train.make_optimizer's "momentum"
FUSED_MIN_PARAMS = 40_000  # per net; from about here on torch's fused kernels beat the batched update on a CPU


class PackedOptimizer:
    """torch.optim's SGD / momentum / Adam / RMSprop updates on the packed parameters, with a per-net lr.

    Two exact ways, by net size:
    - small nets: the update of torch.optim's single-tensor implementation (same formulas, same order)
      applied to the whole flat vector at once, with a flat per-element lr (each net's lr on its own
      elements): a handful of operations per step whatever S and the depth are. Temporaries go to
      preallocated buffers (a fresh multi-megabyte tensor per operation costs more, in page faults,
      than the arithmetic).
    - nets of at least FUSED_MIN_PARAMS parameters: torch.optim's own fused kernels (functional API
      torch.optim.adam.adam / torch.optim.sgd.sgd, fused=True), one call per net with that net's lr,
      on views of the packed tensors: one pass over memory instead of about nine.
    Momentum buffers start at zero, which is exact: torch's first step sets buf = g = 0.9 * 0 + g."""

    def __init__(self, kind: str, lr: list[float], theta: torch.Tensor, layout) -> None:
        if kind not in PACKABLE_OPTIMIZERS:
            raise ConfigError(f"optimizer {kind!r} does not pack; packable: {', '.join(PACKABLE_OPTIMIZERS)}")
        self.kind, self.lrs, self.step_count = kind, list(lr), 0
        lr_per_net = torch.tensor(lr, dtype=theta.dtype, device=theta.device)[:, None]
        self.lr = torch.cat([lr_per_net.expand(len(lr), n).reshape(-1) for n in layout.numels])  # like theta
        self.fused = (kind != "rmsprop" and sum(layout.numels) >= FUSED_MIN_PARAMS
                      and theta.device.type in ("cpu", "cuda"))
        names = {"sgd": (), "momentum": ("buf",), "adam": ("m", "v"), "rmsprop": ("v",)}[kind]
        self.state = {name: torch.zeros_like(theta) for name in names}
        if self.fused and kind == "adam":  # torch keeps one step counter per parameter tensor
            self.steps = torch.zeros(len(lr), len(layout.numels), dtype=theta.dtype, device=theta.device)
        self.buffers = [] if self.fused else [torch.empty_like(theta), torch.empty_like(theta)]

    def select(self, layout, count: int, keep: torch.Tensor) -> None:
        self.lrs = [self.lrs[i] for i in keep.tolist()]
        self.lr = layout.select(self.lr, count, keep)
        self.state = {k: layout.select(v, count, keep) for k, v in self.state.items()}
        self.buffers = [b[:len(keep) * sum(layout.numels)] for b in self.buffers]
        if hasattr(self, "steps"):
            self.steps = self.steps.index_select(0, keep)

    @torch.no_grad()
    def step(self, layout, theta: torch.Tensor, grads: list[torch.Tensor]) -> None:
        """One update of theta from the gradients of its blocks (layout order: [S, *shape] per tensor)."""
        self.step_count += 1
        if not self.fused:
            self._update(theta, torch.cat([g.reshape(-1) for g in grads]), *self.buffers, self.state)
            return
        count = len(self.lrs)
        blocks = lambda flat: [t.view(count, -1) for t in layout.split(flat, count)]  # noqa: E731
        params, grads = blocks(theta), [g.reshape(count, -1) for g in grads]
        state = {name: blocks(v) for name, v in self.state.items()}
        for s, lr in enumerate(self.lrs):
            per = lambda ts: [t[s] for t in ts]  # noqa: E731
            if self.kind == "adam":
                b1, b2 = ADAM_BETAS
                adam_update(per(params), per(grads), per(state["m"]), per(state["v"]), [],
                            list(self.steps[s].unbind()), fused=True, amsgrad=False, beta1=b1,
                            beta2=b2, lr=lr, weight_decay=0.0, eps=ADAM_EPS, maximize=False)
            else:
                momentum = MOMENTUM if self.kind == "momentum" else 0.0
                sgd_update(per(params), per(grads), per(state["buf"]) if momentum else [None] * len(params),
                           fused=True, weight_decay=0.0, momentum=momentum, lr=lr, dampening=0.0,
                           nesterov=False, maximize=False)

    def _update(self, p, g, a, b, state) -> None:
        if self.kind == "sgd":  # p -= lr g
            p.sub_(torch.mul(g, self.lr, out=a))
        elif self.kind == "momentum":  # buf = 0.9 buf + g (buf = g at the first step); p -= lr buf
            buf = state["buf"]
            buf.mul_(MOMENTUM).add_(g)
            p.sub_(torch.mul(buf, self.lr, out=a))
        elif self.kind == "adam":  # p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
            b1, b2 = ADAM_BETAS
            m, v = state["m"], state["v"]
            m.lerp_(g, 1 - b1)
            v.mul_(b2).addcmul_(g, g, value=1 - b2)
            torch.sqrt(v, out=a).div_(math.sqrt(1 - b2 ** self.step_count)).add_(ADAM_EPS)
            torch.mul(m, self.lr, out=b).div_(1 - b1 ** self.step_count)
            p.addcdiv_(b, a, value=-1.0)
        else:  # rmsprop: v = 0.99 v + 0.01 g^2; p -= lr g / (sqrt(v) + eps)
            v = state["v"]
            v.mul_(RMSPROP_ALPHA).addcmul_(g, g, value=1 - RMSPROP_ALPHA)
            torch.sqrt(v, out=a).add_(RMSPROP_EPS)
            p.addcdiv_(torch.mul(g, self.lr, out=b), a, value=-1.0)
