"""Baseline complexity measures to rank the Jacobian norm against (docs/science.md, section 5).

For our MLP h(x) = W_L s(... s(W_1 x + b_1) ...) + b_L, with weight matrices W_1 .. W_L:

- parameter norm   ||w||_2 = sqrt(sum_l ||W_l||_F^2)   (weights only; biases optional)
- spectral product prod_l ||W_l||_2                    (largest singular values)
- path norm        sqrt(sum over input-output paths p of prod_{edges e in p} w_e^2)
                   (l2 path norm, Neyshabur, Tomioka & Srebro 2015, "Norm-based capacity control")
- margin           the 10th percentile over training points of h_y(x) - max_{j != y} h_j(x)
- spectral margin  prod_l ||W_l||_2^2 / margin^2

The norm-based bounds behind these measures are stated for bias-free nets, so biases are left out
of all of them (`parameter_norm(..., include_biases=True)` adds them). The choice of the 10th
percentile and of the squared spectral-product-over-margin form follows Jiang et al. 2020,
"Fantastic Generalization Measures and Where to Find Them" (their margin and
spectral-product-over-margin measures), after Bartlett, Foster & Telgarsky 2017, "Spectrally-
normalized margin bounds for neural networks" (whose bound also carries a (2,1)-norm factor,
omitted here). Products over layers are accumulated as sums of logs in float64, so deep nets
give inf only beyond ~1e308.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from study.measures import MeasureContext, MeasureOutput, register

MARGIN_QUANTILE = 0.10


def weight_matrices(model: nn.Module) -> list[torch.Tensor]:
    """The weight matrices of the model's nn.Linear layers, input to output (our MLP: `layers`)."""
    return [m.weight.detach() for m in model.modules() if isinstance(m, nn.Linear)]


def parameter_norm(model: nn.Module, include_biases: bool = False) -> float:
    """||w||_2 = sqrt(sum_l ||W_l||_F^2) over all weight matrices (+ sum ||b_l||^2 if asked)."""
    total = 0.0
    for m in model.modules():
        if isinstance(m, nn.Linear):
            total += float(m.weight.detach().double().pow(2).sum())
            if include_biases and m.bias is not None:
                total += float(m.bias.detach().double().pow(2).sum())
    return math.sqrt(total)


def spectral_norm(w: torch.Tensor) -> float:
    """||W||_2 = sqrt(λ_max(W W^T)), from the smaller of the Gram matrices W W^T and W^T W by a symmetric
    eigensolver in float64: exact like an SVD (same value to ~1e-15 relative) at a third of its cost."""
    w = w.double()
    gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
    return math.sqrt(max(float(torch.linalg.eigvalsh(gram)[-1]), 0.0))


def spectral_norms(model: nn.Module) -> list[float]:
    """||W_l||_2 (largest singular value) for every weight matrix."""
    return [spectral_norm(w) for w in weight_matrices(model)]


def _exp_or_inf(log_value: float) -> float:
    return math.exp(log_value) if log_value < 709.0 else float("inf")


def _log_product(values: list[float]) -> float:
    return sum(math.log(v) if v > 0 else -math.inf for v in values)


def spectral_product(model: nn.Module) -> float:
    """prod_l ||W_l||_2: the Lipschitz constant bound of a net with 1-Lipschitz nonlinearities."""
    return _exp_or_inf(_log_product(spectral_norms(model)))


def path_norm(model: nn.Module) -> float:
    """l2 path norm sqrt(sum_p prod_{e in p} w_e^2) over all paths from an input to an output unit.

    Summing over paths layer by layer: with V_l = W_l (.)^2 (elementwise square),
        sum_p prod_e w_e^2 = 1^T V_L V_{L-1} ... V_1 1,
    i.e. the sum of the outputs of the net with squared weights, no biases and identity (= ReLU,
    on these non-negative values) nonlinearity at the all-ones input (Neyshabur et al. 2015).
    The layers are taken as a chain in module order, which is our MLP's order. The running vector
    is renormalized at each layer (its scale kept as a log) so that deep nets do not overflow.
    """
    weights = weight_matrices(model)
    v = torch.ones(weights[0].shape[1], dtype=torch.float64, device=weights[0].device)
    log_scale = 0.0
    for w in weights:
        v = w.double().pow(2) @ v
        top = float(v.max())
        if top <= 0:
            return 0.0
        v = v / top
        log_scale += math.log(top)
    return _exp_or_inf(0.5 * (math.log(float(v.sum())) + log_scale))


def margins_of(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-point output margin h_y - max_{j != y} h_j from logits h [n, C], float64 [n] (negative when misclassified)."""
    logits = logits.double()
    correct = logits.gather(1, y[:, None]).squeeze(1)
    return correct - logits.scatter(1, y[:, None], -math.inf).amax(dim=1)


def margins(model: nn.Module, x: torch.Tensor, y: torch.Tensor, chunk_size: int = 1024) -> torch.Tensor:
    """Per-point output margin h_y(x) - max_{j != y} h_j(x), [n] (negative when misclassified)."""
    with torch.no_grad():
        return torch.cat([margins_of(model(x[lo:lo + chunk_size]), y[lo:lo + chunk_size])
                          for lo in range(0, x.shape[0], chunk_size)])


def _quantile(values: torch.Tensor, quantile: float) -> float:
    return float(np.quantile(values.cpu().numpy(), quantile))


def margin(model: nn.Module, x: torch.Tensor, y: torch.Tensor, quantile: float = MARGIN_QUANTILE,
           chunk_size: int = 1024) -> float:
    """The `quantile` (default 10th percentile, Jiang et al. 2020) of the output margins over (x, y).

    A low quantile rather than the minimum: one mislabeled or outlying point does not decide it."""
    return _quantile(margins(model, x, y, chunk_size), quantile)


def _over_margin(norms: list[float], gamma: float) -> float:
    if not gamma > 0:
        return float("nan")
    return _exp_or_inf(2.0 * _log_product(norms) - 2.0 * math.log(gamma))


def spectral_over_margin(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                         quantile: float = MARGIN_QUANTILE, chunk_size: int = 1024) -> float:
    """prod_l ||W_l||_2^2 / gamma^2 with gamma = `margin(model, x, y)`; NaN when gamma <= 0
    (the net does not fit the quantile's share of the points: the measure is undefined)."""
    return _over_margin(spectral_norms(model), margin(model, x, y, quantile, chunk_size))


@register("baselines", record={"measure.param_norm": "float", "measure.spectral_product": "float",
                                "measure.path_norm": "float", "measure.margin": "float",
                                "measure.spectral_margin": "float"})
def measure(ctx: MeasureContext) -> MeasureOutput:
    """The five baselines as trial columns; margins over the training points, labels as trained."""
    norms = spectral_norms(ctx.model)
    gamma = _quantile(margins_of(ctx.logits("train"), ctx.data.y_train), MARGIN_QUANTILE)
    return MeasureOutput(record={
        "measure.param_norm": parameter_norm(ctx.model),
        "measure.spectral_product": _exp_or_inf(_log_product(norms)),
        "measure.path_norm": path_norm(ctx.model),
        "measure.margin": gamma,
        "measure.spectral_margin": _over_margin(norms, gamma),
    })
