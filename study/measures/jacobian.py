"""Input-output Jacobian norms (Novak et al. 2018, Sec. 4.1), exact and batched.

For logits h(x) in R^C and p = softmax(h), the logit Jacobian is A = dh/dx (C x d) and the
softmax Jacobian is J = S A with S = diag(p) - p p^T. Per point we report
    ||J||_F,   ||A||_F,   ||J_y||_2 = ||p_y (e_y - p)^T A||_2  (the correct-class row).

For an MLP the Jacobian is built by batched reverse mode over all classes at once, as explicit
matrix products: G = W_L D_{L-1} W_{L-1} ... D_1 = dh/dz_1 (D_l = diag s'(z_l)), then A = G W_1.
When the first hidden layer is narrower than the input we never form A: with M = W_1 W_1^T, the
C x C matrix K = A A^T = G M G^T gives ||A||_F^2 = tr K, ||J||_F^2 = tr(S K S) and ||J_y||^2 = (S K S)_yy,
so the input dimension leaves the per-point cost and one [C, n_1] x [n_1, n_1] product per point remains.
Any other module falls back to C vector-Jacobian products with autograd.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from study.measures import MeasureContext, MeasureOutput, register
from study.models import MLP


@dataclass
class JacobianNorms:
    jacobian: torch.Tensor  # ||d softmax / dx||_F, [B]
    logit_jacobian: torch.Tensor  # ||d logits / dx||_F, [B]
    jacobian_y: torch.Tensor | None  # ||d softmax_y / dx||_2, [B] (None when no labels were given)


def _slopes(act: torch.nn.Module, z: torch.Tensor) -> torch.Tensor:
    """s'(z) elementwise, by autograd through the (elementwise) nonlinearity."""
    with torch.enable_grad():
        z = z.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(act(z).sum(), z)
    return grad


def softmax_times(p: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """S G for S = diag(p) - p p^T, batched: p [B, C], g [B, C, k] -> [B, C, k]."""
    return p[:, :, None] * (g - torch.einsum("bc,bck->bk", p, g)[:, None, :])


def _mlp_first_layer_grad(model: MLP, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits [B, C], G = d logits / d z_1 [B, C, n_1]) for an MLP, by explicit batched backprop."""
    slopes = []
    h = x
    for layer in model.layers[:-1]:
        z = layer(h)
        slopes.append(_slopes(model.act, z))
        h = model.act(z)
    logits = model.layers[-1](h)
    g = model.layers[-1].weight.expand(x.shape[0], -1, -1) * slopes[-1][:, None, :]
    for layer, slope in zip(reversed(model.layers[1:-1]), reversed(slopes[:-1])):
        g = torch.matmul(g, layer.weight).mul_(slope[:, None, :])  # in place: one fresh [B, C, n] per layer
    return logits, g


def logit_jacobian(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """dh/dx for every point, [B, C, d] (batched reverse mode; C vector-Jacobian products)."""
    if isinstance(model, MLP):
        with torch.no_grad():
            _, g = _mlp_first_layer_grad(model, x)
            return torch.matmul(g, model.layers[0].weight)
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        logits = model(x)
        rows = [torch.autograd.grad(logits[:, c].sum(), x, retain_graph=c + 1 < logits.shape[1])[0]
                for c in range(logits.shape[1])]
    return torch.stack(rows, dim=1)


def _norms_from(p: torch.Tensor, g: torch.Tensor, gram: torch.Tensor | None, y: torch.Tensor | None) -> JacobianNorms:
    if gram is not None:  # A = G W_1 is never formed: K = A A^T = G M G^T is C x C per point
        k = torch.matmul(torch.matmul(g, gram), g.transpose(1, 2))  # [B, C, C]
        s = torch.diag_embed(p) - p[:, :, None] * p[:, None, :]  # S = diag(p) - p p^T, symmetric
        sks = torch.matmul(torch.matmul(s, k), s)  # (S A)(S A)^T
        jy = None
        if y is not None:
            jy = sks[torch.arange(len(y), device=y.device), y, y].clamp_min(0).sqrt()
        trace = lambda m: m.diagonal(dim1=1, dim2=2).sum(1).clamp_min(0).sqrt()  # noqa: E731
        return JacobianNorms(trace(sks), trace(k), jy)
    sg = softmax_times(p, g)
    jy = None
    if y is not None:
        jy = sg[torch.arange(len(y), device=y.device), y].norm(dim=1)
    return JacobianNorms(sg.flatten(1).norm(dim=1), g.flatten(1).norm(dim=1), jy)


def jacobian_norms(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor | None = None,
                   chunk_size: int = 1024) -> JacobianNorms:
    """Per-point ||d softmax/dx||_F, ||d logits/dx||_F and (given labels y) ||d softmax_y/dx||_2.

    Exact; computed in chunks of `chunk_size` points to bound memory."""
    parts = []
    for start in range(0, x.shape[0], chunk_size):
        xb = x[start:start + chunk_size]
        yb = None if y is None else y[start:start + chunk_size]
        with torch.no_grad():
            if isinstance(model, MLP):
                logits, g = _mlp_first_layer_grad(model, xb)
                w1 = model.layers[0].weight
                if w1.shape[0] < w1.shape[1]:  # narrow first layer: Gram trick, never form A
                    parts.append(_norms_from(torch.softmax(logits, 1), g, w1 @ w1.T, yb))
                else:
                    parts.append(_norms_from(torch.softmax(logits, 1), torch.matmul(g, w1), None, yb))
            else:
                a = logit_jacobian(model, xb)
                parts.append(_norms_from(torch.softmax(model(xb), 1), a, None, yb))
    cat = lambda name: torch.cat([getattr(p, name) for p in parts]) if parts and getattr(parts[0], name) is not None else None  # noqa: E731
    return JacobianNorms(cat("jacobian"), cat("logit_jacobian"), cat("jacobian_y"))


@register("jacobian", record={"measure.jacobian_test": "float", "measure.jacobian_train": "float",
                               "measure.logit_jacobian_test": "float", "measure.logit_jacobian_train": "float",
                               "measure.logit_jacobian_sq_test": "float"},
          points={"jacobian": "float",  # ||d softmax / dx||_F
                  "logit_jacobian": "float",  # ||d logits / dx||_F
                  "jacobian_y": "float"})  # ||d softmax_label / dx||_2
def measure(ctx: MeasureContext) -> MeasureOutput:
    """Per-point norms on train (labels as trained) and test points; their means as trial columns."""
    record: dict[str, float] = {}
    frames = []
    for split, x, y in (("train", ctx.data.x_train, ctx.data.y_train), ("test", ctx.data.x_test, ctx.data.y_test)):
        norms = jacobian_norms(ctx.model, x, y, ctx.chunk_size)
        jac = norms.jacobian.double().cpu().numpy()
        logit = norms.logit_jacobian.double().cpu().numpy()
        frames.append(pd.DataFrame({"split": split, "index": np.arange(len(jac)), "jacobian": jac,
                                    "logit_jacobian": logit, "jacobian_y": norms.jacobian_y.double().cpu().numpy()}))
        record[f"measure.jacobian_{split}"] = float(jac.mean())
        record[f"measure.logit_jacobian_{split}"] = float(logit.mean())
        if split == "test":
            record["measure.logit_jacobian_sq_test"] = float((logit ** 2).mean())
    return MeasureOutput(record=record, points=pd.concat(frames, ignore_index=True))
