"""What a regularizer is to study.train, and the autograd pieces the Jacobian penalties share.

A regularizer is a callable `penalty(model, x, y, logits) -> scalar` added to the mean
cross-entropy of each training batch, with three optional hooks that study.train honours:

- `needs_input_grad = True`: train marks the batch as requiring grad *before* the forward, so the
  penalty differentiates the very `logits` of the loss w.r.t. x (no second forward);
- `perturb(x) -> x`: applied to every training batch before the forward (input noise);
- `prepare(model, data)`: called once before training (e.g. to train or load a teacher).

Called outside training (a test, a notebook) with an `x` that does not require grad, the input-
gradient penalties run their own forward (`forward_with_input_grad`).
"""

from __future__ import annotations

import torch

from study.config import TrialConfig


class Regularizer:
    """Base: no input gradient, no perturbation, nothing to prepare. Subclasses define __call__."""

    needs_input_grad = False

    def __init__(self, cfg: TrialConfig) -> None:
        self.cfg = cfg
        self.strength = float(cfg.reg_strength)
        self.target = cfg.reg_target

    def perturb(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def prepare(self, model: torch.nn.Module, data) -> None:
        return None

    def __call__(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


def forward_with_input_grad(model: torch.nn.Module, x: torch.Tensor,
                            logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, logits) with logits differentiable w.r.t. x: the given pair when the forward already
    tracked x (study.train with `needs_input_grad`), else a fresh forward of a grad-marked copy."""
    if x.requires_grad and logits.requires_grad and logits.grad_fn is not None:
        return x, logits
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        return x, model(x)


def target_outputs(logits: torch.Tensor, target: str) -> torch.Tensor:
    """The outputs a penalty differentiates: the logits h, or softmax(h) (cfg.reg_target)."""
    return logits if target == "logits" else torch.softmax(logits, dim=1)


def vjp(outputs: torch.Tensor, x: torch.Tensor, v: torch.Tensor, create_graph: bool = True) -> torch.Tensor:
    """v^T d outputs / dx per point: outputs [B, C], v [B, C] -> [B, *x.shape[1:]].

    With v of shape [K, B, C], K products at once (vmap over the backward pass) -> [K, B, ...]."""
    if v.dim() == outputs.dim():
        (grad,) = torch.autograd.grad(outputs, x, v, create_graph=create_graph)
        return grad
    try:
        (grad,) = torch.autograd.grad(outputs, x, v, create_graph=create_graph, retain_graph=True,
                                      is_grads_batched=True)
        return grad
    except RuntimeError:  # an op without a batching rule: one product at a time
        rows = [torch.autograd.grad(outputs, x, vk, create_graph=create_graph, retain_graph=True)[0] for vk in v]
        return torch.stack(rows)


def output_jacobian(outputs: torch.Tensor, x: torch.Tensor, create_graph: bool = True) -> torch.Tensor:
    """The exact Jacobian d outputs / dx per point, [B, C, d], by C vector-Jacobian products
    (one per output, e_c^T J), differentiable w.r.t. the parameters when create_graph."""
    batch, n_out = outputs.shape
    eye = torch.eye(n_out, dtype=outputs.dtype, device=outputs.device)[:, None, :].expand(n_out, batch, n_out)
    rows = vjp(outputs, x, eye, create_graph)  # [C, B, ...]
    return rows.reshape(n_out, batch, -1).transpose(0, 1)


def squared_norm_per_point(t: torch.Tensor) -> torch.Tensor:
    """Sum of squares over every axis but the first: [B, ...] -> [B]."""
    return t.reshape(t.shape[0], -1).pow(2).sum(dim=1)
