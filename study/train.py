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

from study.config import TrialConfig, step_points
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


class _Training:
    """One model's training in progress: its batches, optimizer, step count, last loss and training accuracy."""

    def __init__(self, model: torch.nn.Module, data: Dataset, cfg: TrialConfig, penalty: Penalty | None) -> None:
        self.model, self.data, self.cfg, self.penalty = model, data, cfg, penalty
        self.perturb = getattr(penalty, "perturb", None)
        self.input_grad = bool(getattr(penalty, "needs_input_grad", False))
        self.params = list(model.parameters())
        # With a grad-marked batch, backward only to the parameters: x's own gradient is never used.
        self.backward_to = [p for p in self.params if p.requires_grad] if self.input_grad else None
        self.start = time.perf_counter()
        self.x, self.y = data.x_train, data.y_train
        n = self.x.shape[0]
        self.flip = DATASET_TABLE[data.name].flip
        self.optimizer = make_optimizer(cfg, self.params)
        batch = step_points(cfg, n)
        self.batches = Minibatches(cfg.seed_for("train"), self.x, batch, batch == n)
        self.steps, self.last_loss, self.acc = 0, math.nan, 0.0

    def batch_loss(self, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        """Cross-entropy plus penalty on one batch, after augmentation and the penalty's perturb hook."""
        cfg = self.cfg
        if cfg.augment:
            xb = augment(xb, self.data.image_shape, cfg.augment_shift, self.flip, self.batches.gen)
        if self.perturb is not None:
            xb = self.perturb(xb)
        if self.input_grad:
            xb = xb.detach().requires_grad_(True)
        logits = self.model(xb)
        loss = torch.nn.functional.cross_entropy(logits, yb)
        if self.penalty is not None:
            loss = loss + self.penalty(self.model, xb, yb, logits)
        return loss

    def first_order_step(self) -> TrainOutcome | None:
        """One minibatch update; the outcome "diverged" (update skipped) at a non-finite loss, else None."""
        idx = self.batches.next_index()
        if idx is None:
            xb, yb = self.x, self.y
        else:
            xb, yb = self.x.index_select(0, idx), self.y.index_select(0, idx)  # 3x faster than x[idx] on a CPU
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.batch_loss(xb, yb)
        if not torch.isfinite(loss):
            self.last_loss = loss.item()
            self.steps += 1
            return self.finish("diverged", f"non-finite training loss at step {self.steps}")
        loss.backward(inputs=self.backward_to)
        self.optimizer.step()
        self.last_loss = loss.item()
        self.steps += 1
        return None

    def lbfgs_iterations(self, budget: int) -> bool:
        """Up to `budget` full-batch L-BFGS iterations (one optimizer.step); True if it stopped short (stalled)."""
        def closure() -> torch.Tensor:
            self.optimizer.zero_grad()
            loss = self.batch_loss(self.x, self.y)
            loss.backward(inputs=self.backward_to)
            return loss
        self.optimizer.param_groups[0]["max_iter"] = budget
        state = self.optimizer.state[self.params[0]]  # torch.optim.LBFGS keeps its state on the first parameter
        before = state.get("n_iter", 0)
        self.last_loss = float(self.optimizer.step(closure).detach())
        done = state.get("n_iter", 0) - before
        self.steps += max(done, 1)
        return done < budget

    def check(self, progress: Callable[[int, float, float], None] | None) -> TrainOutcome | None:
        """The accuracy check: "diverged" on a non-finite loss or weights, "ok" at the target accuracy, else None."""
        if not math.isfinite(self.last_loss) or not _finite(self.model):
            return self.finish("diverged", f"non-finite loss or weights by step {self.steps}")
        self.model.eval()
        self.acc = accuracy(self.model, self.x, self.y)
        self.model.train()
        if progress is not None:
            progress(self.steps, self.last_loss, self.acc)
        return self.finish("ok") if self.acc >= self.cfg.target_accuracy else None

    def budget(self) -> int:
        """Steps until the next accuracy check."""
        return min(self.cfg.eval_every, self.cfg.max_steps - self.steps)

    def finish(self, status: str, message: str = "") -> TrainOutcome:
        """End training: the model in eval mode, the outcome."""
        self.model.eval()
        return TrainOutcome(status, self.steps, self.acc, time.perf_counter() - self.start, message)

    def not_fit(self) -> TrainOutcome:
        """The outcome when the step budget (or L-BFGS's progress) ran out below the target accuracy."""
        return self.finish("not_fit", f"train accuracy {self.acc:.4f} < {self.cfg.target_accuracy} "
                                      f"after {self.steps} steps")


def _train_first_order(run: _Training, progress: Callable[[int, float, float], None] | None) -> TrainOutcome:
    """SGD / momentum / Adam / RMSprop: `eval_every` minibatch steps between accuracy checks."""
    while run.steps < run.cfg.max_steps:
        for _ in range(run.budget()):
            outcome = run.first_order_step()
            if outcome is not None:
                return outcome
        outcome = run.check(progress)
        if outcome is not None:
            return outcome
    return run.not_fit()


def _train_lbfgs(run: _Training, progress: Callable[[int, float, float], None] | None) -> TrainOutcome:
    """L-BFGS: one optimizer.step of up to `eval_every` iterations between accuracy checks, until it stalls."""
    while run.steps < run.cfg.max_steps:
        stalled = run.lbfgs_iterations(run.budget())
        outcome = run.check(progress)
        if outcome is not None:
            return outcome
        if stalled:  # L-BFGS stopped making progress before its budget
            break
    return run.not_fit()


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
    run = _Training(model, data, cfg, penalty)
    model.train()
    return (_train_lbfgs if cfg.optimizer == "lbfgs" else _train_first_order)(run, progress)
