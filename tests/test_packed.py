"""Packed training gives each net the trial it would have alone (study.packed)."""

from __future__ import annotations

import math

import pytest

import study.packed
import study.packed_optim as packed_optim
from study.config import ConfigError, TrialConfig
from study.packed import group_into_packs, pack_key, run_packed
from study.trial import run_trial
from trial_compare import assert_same_trial

SMALL = dict(dataset="synthetic", n_train=200, n_test=100, width=16, depth=3, eval_every=20, max_steps=300)


def mixed_pack(optimizer: str, lrs: list[float], **extra) -> list[TrialConfig]:
    """Four nets: two share a seed (and so their minibatches), the others differ in seed, init and labels;
    one stops at a lower target accuracy, one measures fewer trajectories."""
    settings = [dict(seed=0, init_scale=1.0, random_labels=0.0), dict(seed=0, init_scale=2.0, n_trajectories=1),
                dict(seed=1, init_scale=1.0, random_labels=0.5), dict(seed=2, init_scale=0.5, target_accuracy=0.95)]
    base = {**SMALL, **extra}
    return [TrialConfig(optimizer=optimizer, lr=lr, **s, **base) for lr, s in zip(lrs, settings)]


PACKED = ("time.", "created_at", "env.pack_size")  # what a packed record may differ in besides float32 rounding


def check_pack(cfgs: list[TrialConfig]) -> list[int]:
    got = run_packed(cfgs)
    want = [run_trial(c) for c in cfgs]
    for g, w in zip(got, want):
        assert_same_trial(g, w, ignore=PACKED)
        assert (g.record["env.pack_size"], w.record["env.pack_size"]) == (len(cfgs), 1)
    return [w.record["train.steps"] for w in want]


@pytest.mark.parametrize("optimizer, lrs, extra", [
    ("adam", [0.01, 0.003, 0.03, 0.01], {}),
    ("sgd", [0.1, 0.3, 0.05, 0.2], {}),
    ("momentum", [0.05, 0.02, 0.1, 0.05], {}),
    ("rmsprop", [0.003, 0.01, 0.001, 0.003], {"full_batch": True}),
])
def test_packed_trials_equal_trials_alone(optimizer, lrs, extra):
    steps = check_pack(mixed_pack(optimizer, lrs, **extra))
    assert len(set(steps)) > 1  # the nets left the pack at different steps


@pytest.mark.parametrize("optimizer", ["adam", "momentum", "sgd"])
def test_fused_update_path_equals_trials_alone(monkeypatch, optimizer):
    monkeypatch.setattr(packed_optim, "FUSED_MIN_PARAMS", 0)  # torch's fused kernels, one call per net
    lrs = {"adam": [0.01, 0.003, 0.03, 0.01], "momentum": [0.05, 0.02, 0.1, 0.05], "sgd": [0.1, 0.3, 0.05, 0.2]}
    check_pack(mixed_pack(optimizer, lrs[optimizer], max_steps=100))


@pytest.mark.parametrize("grouped_max", [0, 100])
def test_first_layer_per_input_group_or_one_batched_matmul(monkeypatch, grouped_max):
    """A pack's first layer is a wide matmul per group of nets sharing an input, or one bmm over stacked inputs
    (study.packed.GROUPED_MAX picks by the number of groups): both are exact."""
    monkeypatch.setattr(study.packed, "GROUPED_MAX", grouped_max)
    check_pack(mixed_pack("adam", [0.01, 0.003, 0.03, 0.01], max_steps=100))


def test_a_diverging_net_leaves_the_pack_alone():
    base = {**SMALL, "depth": 4}
    cfgs = [TrialConfig(optimizer="sgd", lr=lr, init_scale=scale, **base) for lr, scale in ((0.1, 1.0), (1e6, 8.0), (0.05, 1.0))]
    got = run_packed(cfgs)
    want = [run_trial(c) for c in cfgs]
    assert [w.status for w in want] == ["ok", "diverged", "not_fit"]
    for g, w in zip(got, want):
        assert_same_trial(g, w, ignore=PACKED)
    assert math.isnan(got[1].record.get("train.loss", math.nan))  # no measures on a diverged net


def test_augmentation_and_images_pack():
    base = dict(dataset="digits", n_train=100, n_test=50, augment=True, augment_shift=1, width=16, max_steps=60, eval_every=20)
    cfgs = [TrialConfig(seed=seed, lr=lr, **base) for seed, lr in ((0, 0.01), (0, 0.003), (1, 0.01))]
    check_pack(cfgs)


@pytest.mark.parametrize("regularizer, extra", [("jacobian", {"reg_strength": 0.01}), ("input_noise", {"noise_std": 0.3})])
def test_regularized_nets_pack(regularizer, extra):
    cfgs = [TrialConfig(regularizer=regularizer, lr=lr, seed=seed, **{**SMALL, "max_steps": 60}, **extra)
            for lr, seed in ((0.01, 0), (0.003, 0), (0.01, 1))]
    check_pack(cfgs)


def test_lbfgs_runs_one_by_one():
    cfgs = [TrialConfig(optimizer="lbfgs", lr=lr, **{**SMALL, "max_steps": 40}) for lr in (1.0, 0.5)]
    got = run_packed(cfgs)
    for g, c in zip(got, cfgs):
        assert_same_trial(g, run_trial(c), rel=0.0)
    assert [len(p) for p in group_into_packs(cfgs, 8)] == [1, 1]


def test_pack_key_and_grouping():
    a = TrialConfig(**SMALL)
    free = [a.replace(seed=3), a.replace(lr=0.1), a.replace(init_scale=4.0), a.replace(random_labels=1.0),
            a.replace(target_accuracy=0.9), a.replace(n_trajectories=1)]
    assert all(pack_key(c) == pack_key(a) for c in free)
    bound = [a.replace(width=32), a.replace(depth=2), a.replace(optimizer="sgd"), a.replace(batch_size=64),
             a.replace(n_train=100), a.replace(nonlinearity="tanh"), a.replace(max_steps=10), a.replace(eval_every=10),
             a.replace(full_batch=True), a.replace(standardize="none"), a.replace(regularizer="jacobian", reg_strength=0.1)]
    assert len({pack_key(c) for c in bound + [a]}) == len(bound) + 1
    cfgs = [a.replace(seed=s % 3, lr=0.001 * (1 + s)) for s in range(7)] + [a.replace(width=8)]
    packs = group_into_packs(cfgs, 3)
    assert [len(p) for p in packs] == [3, 3, 1, 1]
    assert [c.seed for c in packs[0] + packs[1] + packs[2]] == [0, 0, 0, 1, 1, 2, 2]  # same seeds together
    assert sorted(c.trial_id for p in packs for c in p) == sorted(c.trial_id for c in cfgs)
    with pytest.raises(ConfigError, match="pack size"):
        group_into_packs(cfgs, 0)
    with pytest.raises(ConfigError, match="differ in width"):
        run_packed([a, a.replace(width=8)])
