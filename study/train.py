"""Training to 100% train accuracy (or a step budget), on tensors that live on the trial's device.

One step is one optimizer update (for L-BFGS, one iteration of the full-batch method). Accuracy on
the whole training set is checked every `eval_every` steps; training stops as soon as it reaches
`target_accuracy`. A non-finite loss or non-finite weights end training with status "diverged".
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import torch

from study.config import TrialConfig
from study.data import Dataset, augment
from study.datasets import TABLE as DATASET_TABLE

Penalty = Callable[[torch.nn.Module, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class TrainOutcome:
    status: str  # ok (reached target accuracy) | not_fit | diverged
    steps: int
    train_accuracy: float
    seconds: float
    message: str = ""


class Minibatches:
    """A trial's minibatch sequence: a generator seeded by cfg.seed_for("train"), a fresh randperm of the
    training rows whenever the current one has fewer than `batch` rows left (the rest are skipped); the
    same generator then draws the batch's augmentation. Packed trials (study.packed) draw from the same
    class, so a packed net sees exactly the batches it would see alone."""

    def __init__(self, seed: int, x: torch.Tensor, batch: int, full_batch: bool) -> None:
        self.gen = torch.Generator().manual_seed(seed)
        self.x, self.n, self.batch, self.full_batch = x, x.shape[0], batch, full_batch
        self.order, self.cursor = None, self.n

    def next_index(self) -> torch.Tensor | None:
        """The rows of the next minibatch, or None when every step uses the whole training set."""
        if self.full_batch:
            return None
        if self.cursor + self.batch > self.n:
            self.order, self.cursor = torch.randperm(self.n, generator=self.gen).to(self.x.device), 0
        idx = self.order[self.cursor:self.cursor + self.batch]
        self.cursor += self.batch
        return idx


def make_optimizer(cfg: TrialConfig, params) -> torch.optim.Optimizer:
    """sgd | momentum (0.9) | adam | rmsprop | lbfgs (strong Wolfe line search, history 100)."""
    params = list(params)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr)
    if cfg.optimizer == "momentum":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=0.9)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr)
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=cfg.lr)
    return torch.optim.LBFGS(params, lr=cfg.lr, max_iter=cfg.eval_every, history_size=100,
                             line_search_fn="strong_wolfe", tolerance_grad=0.0, tolerance_change=0.0)


def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, chunk_size: int = 8192) -> float:
    with torch.no_grad():
        hits = sum(int((model(x[i:i + chunk_size]).argmax(1) == y[i:i + chunk_size]).sum())
                   for i in range(0, x.shape[0], chunk_size))
    return hits / max(1, x.shape[0])


def _finite(model: torch.nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


def train(model: torch.nn.Module, data: Dataset, cfg: TrialConfig, penalty: Penalty | None = None,
          progress: Callable[[int, float, float], None] | None = None) -> TrainOutcome:
    """Train in place. `penalty(model, x, y, logits)` is added to the cross-entropy (regularizers).

    A penalty may carry optional hooks (study.regularizers.base): `prepare(model, data)` runs once
    before training (not timed), `perturb(x)` transforms every training batch before the forward
    (input noise), and `needs_input_grad = True` marks the batch as requiring grad before the forward,
    so the penalty differentiates the loss's own logits w.r.t. x instead of running a second forward.
    `progress(steps, loss, train_accuracy)` is called at every accuracy check."""
    if penalty is not None and hasattr(penalty, "prepare"):
        penalty.prepare(model, data)
    perturb = getattr(penalty, "perturb", None)
    input_grad = bool(getattr(penalty, "needs_input_grad", False))
    # With a grad-marked batch, backward only to the parameters: x's own gradient is never used.
    backward_to = [p for p in model.parameters() if p.requires_grad] if input_grad else None
    start = time.perf_counter()
    model.train()
    x, y = data.x_train, data.y_train
    n = x.shape[0]
    flip = DATASET_TABLE[data.name].flip

    def batch_loss(xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        if cfg.augment:
            xb = augment(xb, data.image_shape, cfg.augment_shift, flip, batches.gen)
        if perturb is not None:
            xb = perturb(xb)
        if input_grad:
            xb = xb.detach().requires_grad_(True)
        logits = model(xb)
        loss = torch.nn.functional.cross_entropy(logits, yb)
        if penalty is not None:
            loss = loss + penalty(model, xb, yb, logits)
        return loss

    optimizer = make_optimizer(cfg, model.parameters())
    full_batch = cfg.full_batch or cfg.optimizer == "lbfgs" or cfg.batch_size >= n
    batches = Minibatches(cfg.seed_for("train"), x, n if full_batch else cfg.batch_size, full_batch)
    steps, last_loss, acc = 0, math.nan, 0.0

    def finish(status: str, message: str = "") -> TrainOutcome:
        model.eval()
        return TrainOutcome(status, steps, acc, time.perf_counter() - start, message)

    while steps < cfg.max_steps:
        if cfg.optimizer == "lbfgs":
            def closure() -> torch.Tensor:
                optimizer.zero_grad()
                loss = batch_loss(x, y)
                loss.backward(inputs=backward_to)
                return loss
            remaining = min(cfg.eval_every, cfg.max_steps - steps)
            optimizer.param_groups[0]["max_iter"] = remaining
            state = optimizer.state[optimizer._params[0]]
            before = state.get("n_iter", 0)
            last_loss = float(optimizer.step(closure).detach())
            done = state.get("n_iter", 0) - before
            steps += max(done, 1)
            stalled = done < remaining
        else:
            for _ in range(min(cfg.eval_every, cfg.max_steps - steps)):
                idx = batches.next_index()
                if idx is None:
                    xb, yb = x, y
                else:
                    xb, yb = x.index_select(0, idx), y.index_select(0, idx)  # 3x faster than x[idx] on a CPU
                optimizer.zero_grad(set_to_none=True)
                loss = batch_loss(xb, yb)
                if not torch.isfinite(loss):
                    last_loss = loss.item()
                    steps += 1
                    return finish("diverged", f"non-finite training loss at step {steps}")
                loss.backward(inputs=backward_to)
                optimizer.step()
                last_loss = loss.item()
                steps += 1
            stalled = False
        if not math.isfinite(last_loss) or not _finite(model):
            return finish("diverged", f"non-finite loss or weights by step {steps}")
        model.eval()
        acc = accuracy(model, x, y)
        model.train()
        if progress is not None:
            progress(steps, last_loss, acc)
        if acc >= cfg.target_accuracy:
            return finish("ok")
        if stalled:  # L-BFGS stopped making progress before its budget
            break
    return finish("not_fit", f"train accuracy {acc:.4f} < {cfg.target_accuracy} after {steps} steps")
