import pytest
import safetensors.torch
import torch

import study.train
from study import run_trial
from study.config import TrialConfig
from study.data import load_dataset
from study.regularizers import jacobian_matching as jm
from study.regularizers import make_penalty

from reg_helpers import directional_fd_check, tiny_batch, tiny_mlp

S = 1e-3


def per_point_jacobian(model, x, target):
    def f(v):
        h = model(v[None])[0]
        return h if target == "logits" else torch.softmax(h, 0)
    return torch.stack([torch.autograd.functional.jacobian(f, x[i]) for i in range(x.shape[0])])


def with_teacher(cfg, teacher):
    penalty = jm.JacobianMatching(cfg, teacher=teacher)
    penalty.prepare(None, None)  # a given teacher is kept: nothing to train
    return penalty


@pytest.mark.parametrize("target", ["logits", "softmax"])
def test_terms_match_point_by_point_autograd(target):
    student, teacher = tiny_mlp("tanh", seed=0), tiny_mlp("tanh", seed=1)
    x, _ = tiny_batch()
    out_sq, jac_sq = jm.matching_terms(teacher, student, x, student(x), target)
    with torch.no_grad():
        ht, hs = teacher(x), student(x)
    if target == "softmax":
        ht, hs = torch.softmax(ht, 1), torch.softmax(hs, 1)
    torch.testing.assert_close(out_sq.detach(), ((ht - hs) ** 2).sum(1))
    jt, js = per_point_jacobian(teacher, x, target), per_point_jacobian(student, x, target)
    torch.testing.assert_close(jac_sq.detach(), ((jt - js) ** 2).sum(dim=(1, 2)), rtol=1e-10, atol=1e-14)


def test_penalty_is_the_noise_averaged_squared_error_distillation_loss():
    """Prop. 2 for ReLU logits: (lambda/2) E_e ||T(x+e) - S(x+e)||^2, by antithetic Monte Carlo."""
    student, teacher = tiny_mlp("relu", seed=0), tiny_mlp("relu", seed=1)
    x, y = tiny_batch()
    cfg = TrialConfig(regularizer="jacobian_matching", reg_strength=3.0, noise_std=S)
    e = torch.randn(20000, *x.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * S

    def sq_gap(xs):
        with torch.no_grad():
            return ((teacher(xs) - student(xs)) ** 2).sum(-1)
    clean = sq_gap(x)
    noisy = 0.5 * (sq_gap(x[None] + e) + sq_gap(x[None] - e)).mean(0)
    out_sq, jac_sq = jm.matching_terms(teacher, student, x, student(x))
    torch.testing.assert_close(out_sq.detach(), clean)
    torch.testing.assert_close(S ** 2 * jac_sq.detach(), noisy - clean, rtol=0.05, atol=0)
    value = with_teacher(cfg, teacher)(student, x, y, student(x)).item()
    assert value == pytest.approx(1.5 * noisy.mean().item(), rel=1e-6)
    assert value != pytest.approx(1.5 * clean.mean().item(), rel=1e-9)  # the Jacobian term counts


@pytest.mark.parametrize("target", ["logits", "softmax"])
def test_parameter_gradient_matches_finite_differences(target):
    student, teacher = tiny_mlp("tanh", seed=0), tiny_mlp("tanh", seed=1)
    x, y = tiny_batch()
    cfg = TrialConfig(regularizer="jacobian_matching", reg_strength=2.0, noise_std=0.7, reg_target=target)
    penalty = with_teacher(cfg, teacher)
    for analytic, numeric in directional_fd_check(student, lambda: penalty(student, x, y, student(x))):
        assert analytic == pytest.approx(numeric, rel=1e-6, abs=1e-9)
        assert abs(analytic) > 1e-6
    value = penalty(student, x, y, student(x))
    assert value.requires_grad and all(  # the teacher is a fixed target: no gradient reaches it
        g is None for g in torch.autograd.grad(value, list(teacher.parameters()), allow_unused=True))


STUDENT = TrialConfig(dataset="digits", n_train=60, n_test=50, width=16, max_steps=300, eval_every=50, lr=0.01,
                      n_trajectories=0, regularizer="jacobian_matching", reg_strength=1.0, noise_std=0.5)


def test_teacher_is_the_unregularized_trial_and_is_cached(monkeypatch, tmp_path):
    teacher_cfg = jm.teacher_config(STUDENT)
    assert teacher_cfg == STUDENT.replace(regularizer="none", reg_strength=0.0, noise_std=0.0)
    monkeypatch.setenv(jm.TEACHER_CACHE_ENV, str(tmp_path))
    monkeypatch.setattr(jm, "_TEACHERS", {})
    data = load_dataset(STUDENT)
    teacher = jm.load_or_train_teacher(STUDENT, data)
    reference = run_trial(teacher_cfg).model  # the teacher's own trial, trained separately
    for ours, theirs in zip(teacher.state_dict().values(), reference.state_dict().values()):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=0)
    assert not any(p.requires_grad for p in teacher.parameters()) and not teacher.training
    path = tmp_path / f"{teacher_cfg.trial_id}.safetensors"
    saved = safetensors.torch.load_file(str(path))  # safetensors, read by safetensors itself: no pickle
    torch.testing.assert_close(saved["layers.0.weight"], reference.layers[0].weight)

    def no_training(*args, **kwargs):
        raise AssertionError("the cached teacher must not be trained again")
    monkeypatch.setattr(study.train, "train", no_training)
    in_process = jm.load_or_train_teacher(STUDENT, data)  # in-process cache
    monkeypatch.setattr(jm, "_TEACHERS", {})
    from_disk = jm.load_or_train_teacher(STUDENT, data)  # disk cache
    for model in (in_process, from_disk):
        torch.testing.assert_close(model.layers[-1].weight, reference.layers[-1].weight, rtol=0, atol=0)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp files left


def test_a_damaged_teacher_cache_file_is_trained_again_and_replaced(monkeypatch, tmp_path):
    monkeypatch.setenv(jm.TEACHER_CACHE_ENV, str(tmp_path))
    monkeypatch.setattr(jm, "_TEACHERS", {})
    data = load_dataset(STUDENT)
    path = tmp_path / f"{jm.teacher_config(STUDENT).trial_id}.safetensors"
    good = jm.load_or_train_teacher(STUDENT, data)
    path.write_bytes(path.read_bytes()[:100])  # truncated, as by a full disk
    monkeypatch.setattr(jm, "_TEACHERS", {})
    again = jm.load_or_train_teacher(STUDENT, data)
    torch.testing.assert_close(again.layers[0].weight, good.layers[0].weight, rtol=0, atol=0)
    assert safetensors.torch.load_file(str(path))["layers.0.weight"].shape == good.layers[0].weight.shape


def test_penalty_needs_its_teacher():
    penalty = make_penalty(STUDENT)
    model = tiny_mlp()
    x, y = tiny_batch()
    with pytest.raises(RuntimeError, match="no teacher"):
        penalty(model, x, y, model(x))
