"""Gaussian input noise (Bishop 1995, "Training with noise is equivalent to Tikhonov regularization";
Srinivas & Fleuret 2018, "Knowledge transfer with Jacobian matching", Prop. 2):

    train on x + e,   e ~ N(0, s^2 I),   s = cfg.noise_std,   fresh noise for every batch at every step.

Why it belongs with the Jacobian penalties: E_e L(x + e) = L(x) + (s^2 / 2) tr(d^2 L / dx^2) + O(s^4).
For a piecewise-linear net (ReLU), d^2 h / dx^2 = 0 between kinks, so with A = dh/dx:
- half squared error L = ||t - h||^2 / 2:  tr(d^2 L / dx^2) = ||A||_F^2, i.e. noise of std s is the
  logit-Jacobian penalty of `jacobian` with lambda = s^2 (Prop. 2 with a constant teacher);
- cross-entropy L = -log softmax(h)_y:  tr(d^2 L / dx^2) = tr(A^T (diag p - p p^T) A), a softmax-
  weighted Jacobian norm <= ||A||_F^2 / 2 (the covariance diag p - p p^T has eigenvalues <= 1/2): at
  most the logit-Jacobian penalty with lambda = s^2 / 2, and far below it once p is confident.
(tests/regularizers/test_input_noise.py checks both expansions by Monte Carlo.)

The noise is drawn on the CPU from a generator seeded by cfg.seed_for("input_noise") and moved to the
batch's device, so the same config sees the same noise everywhere. It perturbs training batches only
(not the accuracy checks or the measures); the penalty added to the loss is zero.
"""

from __future__ import annotations

import torch

from study.config import TrialConfig
from study.regularizers.base import Regularizer


class InputNoise(Regularizer):
    def __init__(self, cfg: TrialConfig) -> None:
        super().__init__(cfg)
        self.std = float(cfg.noise_std)
        self.generator = torch.Generator().manual_seed(cfg.seed_for("input_noise"))

    def perturb(self, x: torch.Tensor) -> torch.Tensor:
        noise = torch.randn(x.shape, generator=self.generator, dtype=torch.float32)
        return x + (self.std * noise).to(device=x.device, dtype=x.dtype)

    def __call__(self, model, x, y, logits):
        return logits.new_zeros(())
