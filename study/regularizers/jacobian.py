"""Exact input-Jacobian penalty (Hoffman, Roberts & Yaida 2019, "Robust learning with Jacobian
regularization", arXiv 1908.02729):

    R = (lambda / 2) E_x ||d f(x) / dx||_F^2,      f = logits h   (reg_target="logits")
                                                   f = softmax(h) (reg_target="softmax")

E_x is the mean over the batch. ||J||_F^2 = sum_c ||e_c^T J||^2 is computed from C vector-Jacobian
products (all C in one vmapped backward pass) with create_graph=True, so R is differentiable w.r.t.
the parameters; the cost is about C times a backward pass (see benchmarks/bench_regularizers.py).
This is the reference for the unbiased random-projection estimate in `jacobian_proj`.
"""

from __future__ import annotations

import torch

from study.regularizers.base import (Regularizer, forward_with_input_grad, output_jacobian, squared_norm_per_point,
                                     target_outputs)


def jacobian_sq_norms(model: torch.nn.Module, x: torch.Tensor, logits: torch.Tensor,
                      target: str = "logits") -> torch.Tensor:
    """||d f/dx||_F^2 per point, [B], differentiable w.r.t. the parameters."""
    x, logits = forward_with_input_grad(model, x, logits)
    return squared_norm_per_point(output_jacobian(target_outputs(logits, target), x))


class JacobianPenalty(Regularizer):
    """(lambda/2) E_x ||d f/dx||_F^2, exact."""

    needs_input_grad = True

    def __call__(self, model, x, y, logits):
        return 0.5 * self.strength * jacobian_sq_norms(model, x, logits, self.target).mean()
