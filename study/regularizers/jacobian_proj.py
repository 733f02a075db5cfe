"""Input-Jacobian penalty by random projections (Hoffman, Roberts & Yaida 2019, Sec. 3 / Alg. 1):

    ||J||_F^2 = C E_v ||v^T J||^2,   v uniform on the unit sphere S^{C-1}   (E[v v^T] = I / C)

    R = (lambda / 2) E_x (C / K) sum_{k=1..K} ||v_k(x)^T J(x)||^2,   K = cfg.reg_projections

an unbiased estimate of the exact penalty in `jacobian` (the same target: logits or softmax). Each
point of each batch gets its own K directions, so one projection costs one extra vector-Jacobian
product (plus its double-backward) per step instead of C. Directions come from a CPU generator
seeded by cfg.seed_for("jacobian_proj"), drawn at every call: training stays deterministic, and the
same config draws the same directions on every device.
"""

from __future__ import annotations

import torch

from study.config import TrialConfig
from study.regularizers.base import Regularizer, forward_with_input_grad, squared_norm_per_point, target_outputs, vjp


def sphere_directions(k: int, batch: int, n_out: int, generator: torch.Generator) -> torch.Tensor:
    """[k, batch, n_out] directions uniform on the unit sphere (normalized standard Gaussians)."""
    v = torch.randn(k, batch, n_out, generator=generator, dtype=torch.float64)
    return v / v.norm(dim=-1, keepdim=True)


def projected_sq_norms(model: torch.nn.Module, x: torch.Tensor, logits: torch.Tensor, directions: torch.Tensor,
                       target: str = "logits") -> torch.Tensor:
    """(C / K) sum_k ||v_k^T J||^2 per point, [B], for directions [K, B, C]; differentiable."""
    x, logits = forward_with_input_grad(model, x, logits)
    outputs = target_outputs(logits, target)
    v = directions.to(device=outputs.device, dtype=outputs.dtype)
    k, n_out = v.shape[0], outputs.shape[1]
    products = vjp(outputs, x, v[0] if k == 1 else v)  # [B, d] or [K, B, d]
    sq = squared_norm_per_point(products) if k == 1 else products.reshape(k, x.shape[0], -1).pow(2).sum(-1).sum(0)
    return sq * (n_out / k)


class ProjectedJacobianPenalty(Regularizer):
    """(lambda/2) E_x C/K sum_k ||v_k^T J||^2 with fresh seeded directions at every call."""

    needs_input_grad = True

    def __init__(self, cfg: TrialConfig) -> None:
        super().__init__(cfg)
        self.projections = int(cfg.reg_projections)
        self.generator = torch.Generator().manual_seed(cfg.seed_for("jacobian_proj"))

    def __call__(self, model, x, y, logits):
        directions = sphere_directions(self.projections, x.shape[0], logits.shape[1], self.generator)
        return 0.5 * self.strength * projected_sq_norms(model, x, logits, directions, self.target).mean()
