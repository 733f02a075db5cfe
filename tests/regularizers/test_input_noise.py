"""Input noise against its second-order expansion E_e L(x + e) = L(x) + (s^2/2) tr(d^2L/dx^2) + O(s^4).

For a ReLU net the logits are linear between kinks (d^2 h/dx^2 = 0), so with A = dh/dx:
- half squared error, L = ||t - h||^2 / 2: tr(d^2L/dx^2) = ||A||_F^2, and the noise-averaged loss is
  L + s^2 * R with R the `jacobian` penalty at lambda = 1 (R = ||A||_F^2 / 2);
- cross-entropy: tr(d^2L/dx^2) = tr(A^T (diag p - p p^T) A), which we compute from the measure's A and
  check; it is at most ||A||_F^2 / 2 (the covariance has eigenvalues <= 1/2), i.e. at most s^2/2 * R,
  and on these nets clearly below it: cross-entropy noise is not the plain logit-Jacobian penalty.
Monte Carlo in float64 with antithetic pairs (x + e, x - e), which cancels the first-order term exactly.
"""

import pytest
import torch

from study.config import TrialConfig
from study.measures.jacobian import logit_jacobian
from study.regularizers import make_penalty
from study.regularizers.input_noise import InputNoise

from reg_helpers import tiny_batch, tiny_mlp

S = 1e-3
N_SAMPLES = 20000


def noise_average(model, x, loss_fn, s=S, n=N_SAMPLES, seed=0):
    """Per point E_e loss(x + e), e ~ N(0, s^2 I), by antithetic Monte Carlo: [B]."""
    gen = torch.Generator().manual_seed(seed)
    e = torch.randn(n, *x.shape, generator=gen, dtype=torch.float64) * s
    with torch.no_grad():
        plus = loss_fn(model((x[None] + e).reshape(-1, x.shape[1]))).reshape(n, -1)
        minus = loss_fn(model((x[None] - e).reshape(-1, x.shape[1]))).reshape(n, -1)
    return (0.5 * (plus + minus)).mean(dim=0)


def test_squared_error_noise_is_the_logit_jacobian_penalty_with_lambda_s2():
    model = tiny_mlp("relu")
    x, _ = tiny_batch()
    t = torch.randn(x.shape[0], 4, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    reps = N_SAMPLES

    def half_se(h):  # h: [n * B, C] with the batch repeated n times
        return 0.5 * ((t.repeat(h.shape[0] // t.shape[0], 1) - h) ** 2).sum(dim=1)

    with torch.no_grad():
        clean = half_se(model(x))
    increase = (noise_average(model, x, half_se, n=reps) - clean).mean().item()
    penalty = make_penalty(TrialConfig(regularizer="jacobian", reg_strength=1.0))(model, x, None, model(x)).item()
    assert increase == pytest.approx(S ** 2 * penalty, rel=0.03)


def test_cross_entropy_noise_is_the_softmax_weighted_jacobian():
    model = tiny_mlp("relu")
    x, y = tiny_batch()

    def ce(h):
        return torch.nn.functional.cross_entropy(h, y.repeat(h.shape[0] // y.shape[0]), reduction="none")

    with torch.no_grad():
        clean = ce(model(x))
        a = logit_jacobian(model, x)
        p = torch.softmax(model(x), dim=1)
    cov = torch.diag_embed(p) - p[:, :, None] * p[:, None, :]
    hessian_trace = torch.einsum("bcd,bce,bed->b", a, cov, a)  # tr(A^T (diag p - p p^T) A)
    increase = noise_average(model, x, ce) - clean
    torch.testing.assert_close(increase, 0.5 * S ** 2 * hessian_trace, rtol=0.05, atol=0)
    penalty = make_penalty(TrialConfig(regularizer="jacobian", reg_strength=1.0))(model, x, y, model(x)).item()
    assert increase.mean().item() <= 0.5 * S ** 2 * penalty
    assert increase.mean().item() < 0.8 * 0.5 * S ** 2 * penalty  # a different quantity, not the bound


def test_perturb_adds_seeded_gaussian_noise_of_the_configured_std():
    cfg = TrialConfig(regularizer="input_noise", noise_std=0.25)
    noise = make_penalty(cfg)
    assert isinstance(noise, InputNoise)
    x = torch.full((400, 50), 3.0)
    first, second = noise.perturb(x) - 3.0, noise.perturb(x) - 3.0
    assert abs(first.mean().item()) < 0.005 and first.std().item() == pytest.approx(0.25, rel=0.01)
    assert not torch.equal(first, second)  # fresh noise at every step
    again = make_penalty(cfg)
    torch.testing.assert_close(again.perturb(x) - 3.0, first, rtol=0, atol=0)  # seeded by the config
    other = make_penalty(cfg.replace(seed=1))
    assert not torch.equal(other.perturb(x) - 3.0, first)
    logits = torch.randn(4, 3, requires_grad=True)
    assert noise(None, x, None, logits).item() == 0.0
