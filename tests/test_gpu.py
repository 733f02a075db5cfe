"""On a CUDA device, trials give the CPU's records (skipped where there is none: run them with `make gpu-check`).

Every random draw (data subset, initialization, minibatch order, augmentation, regularizer noise) comes
from a CPU torch.Generator, so a trial on `cuda` differs from the same trial on the CPU only by float32
rounding in differently ordered sums. Training is short (60 steps) so that rounding cannot grow into a
different trajectory; integer columns (transition counts, steps) may move by a crossing or two when a
kink crossing is within rounding of a region boundary, so they get a small tolerance.
"""

from __future__ import annotations

import pytest
import torch

from study.config import TrialConfig
from study.data import load_dataset
from study.measures.jacobian import jacobian_norms
from study.models import build_model
from study.packed import run_packed
from study.trial import run_trial
from trial_compare import assert_same_trial

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")

BASE = dict(dataset="digits", n_train=200, n_test=100, width=32, depth=3, max_steps=60, eval_every=20,
            n_trajectories=1, trajectory_points=8)
REL = 1e-3


def near_int(a: int, b: int) -> bool:
    """Integers (transition counts, steps) within 2% or 2."""
    return abs(a - b) <= max(2, 0.02 * abs(b))


def assert_records_close(got, want) -> None:
    assert_same_trial(got, want, rel=REL, ints=near_int, ignore=("time.", "env.", "created_at"))


@pytest.mark.parametrize("nonlinearity, optimizer", [("relu", "adam"), ("tanh", "sgd"), ("relu6", "lbfgs")])
def test_trial_on_cuda_gives_the_cpu_records(nonlinearity, optimizer):
    cfg = TrialConfig(nonlinearity=nonlinearity, optimizer=optimizer, lr=0.01 if optimizer != "lbfgs" else 0.5, **BASE)
    assert_records_close(run_trial(cfg, "cuda"), run_trial(cfg, "cpu"))


def test_packed_trials_on_cuda_give_the_cpu_records():
    cfgs = [TrialConfig(seed=seed, lr=lr, **BASE) for seed, lr in ((0, 0.01), (0, 0.003), (1, 0.01), (2, 0.02))]
    for got, want in zip(run_packed(cfgs, device="cuda"), [run_trial(c, "cpu") for c in cfgs]):
        assert_records_close(got, want)


def test_jacobian_norms_on_cuda_equal_the_cpu():
    cfg = TrialConfig(**BASE)
    data = load_dataset(cfg)
    model = build_model(cfg, data.n_features, data.n_classes).eval()
    cpu = jacobian_norms(model, data.x_test, data.y_test)
    gpu = jacobian_norms(model.to("cuda"), data.x_test.to("cuda"), data.y_test.to("cuda"))
    for name in ("jacobian", "logit_jacobian", "jacobian_y"):
        torch.testing.assert_close(getattr(gpu, name).cpu(), getattr(cpu, name), rtol=1e-4, atol=1e-6)
