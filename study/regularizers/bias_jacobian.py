"""Bias-Jacobian ("full-Jacobian") penalty (Srinivas & Fleuret 2019, "Full-Gradient Representation
for Neural Network Visualization", arXiv 1905.00780).

For a ReLU (or leaky-ReLU) net with biases, any output f is exactly

    f(x) = grad_x f(x)^T x + sum_l grad_{b_l} f(x)^T b_l

(their completeness property), so the bias-gradient terms grad_{b_l} f(x) ⊙ b_l carry the part of f
that the input-gradient misses (with it, the "full Jacobian"). We penalize their size:

    R = (lambda / 2) E_x sum_l ||grad_{b_l} f(x) ⊙ b_l||^2,   f(x) = h_y(x), the logit of the label
                                                             (softmax_y with reg_target="softmax"),

over every layer's bias, the output layer's included. One scalar f per point makes this one
vector-Jacobian product per step (not C). Per point, grad_{b_l} f = df/dz_l for the pre-activation
z_l = W_l a_{l-1} + b_l, so the penalty runs its own forward of the MLP to reach the z_l (study.models.MLP:
`layers`, `act`). At zero biases (the initialization) R and its gradient vanish: the penalty acts
once training has moved the biases. Completeness needs a positively homogeneous nonlinearity (relu,
leaky_relu); the penalty itself is defined for every nonlinearity.
"""

from __future__ import annotations

import torch

from study.regularizers.base import Regularizer, target_outputs


def bias_gradients(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, target: str = "logits",
                   create_graph: bool = True) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """(f [B], [grad_{b_l} f per point, [B, n_l], for every layer l]) with f = target output of class y."""
    if not (hasattr(model, "layers") and hasattr(model, "act")):
        raise TypeError("bias_jacobian needs an MLP with `layers` (nn.Linear) and `act` (study.models.MLP)")
    with torch.enable_grad():
        pre = []
        h = x.detach()
        for i, layer in enumerate(model.layers):
            z = layer(h)
            pre.append(z)
            h = model.act(z) if i + 1 < len(model.layers) else z
        f = target_outputs(h, target).gather(1, y[:, None])[:, 0]
        grads = torch.autograd.grad(f.sum(), pre, create_graph=create_graph)
    return f, list(grads)


def bias_terms(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, target: str = "logits",
               create_graph: bool = True) -> list[torch.Tensor]:
    """The full-Jacobian bias terms grad_{b_l} f(x) ⊙ b_l per point, one [B, n_l] tensor per layer."""
    _, grads = bias_gradients(model, x, y, target, create_graph)
    return [g * layer.bias for g, layer in zip(grads, model.layers)]


class BiasJacobianPenalty(Regularizer):
    """(lambda/2) E_x sum_l ||grad_{b_l} f ⊙ b_l||^2 with f the label's logit (or softmax)."""

    def __call__(self, model, x, y, logits):
        terms = bias_terms(model, x, y, self.target)
        per_point = sum(t.pow(2).sum(dim=1) for t in terms)
        return 0.5 * self.strength * per_point.mean()
