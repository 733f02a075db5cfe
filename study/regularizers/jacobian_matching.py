"""Distillation with Jacobian matching (Srinivas & Fleuret 2018, "Knowledge transfer with Jacobian
matching", ICML; arXiv 1803.00443).

Their Prop. 2: for squared-error matching of a teacher T and a student S under input noise
e ~ N(0, s^2 I), with T and S expanded to first order around x,

    E_e ||T(x + e) - S(x + e)||^2 ~= ||T(x) - S(x)||^2 + s^2 ||J_T(x) - J_S(x)||_F^2,

J = d output / dx. (Exact up to kink crossings for the logits of ReLU nets, which are linear between
kinks; for softmax outputs the second-order terms add s^2 (T - S) . Laplacian(T - S).) Jacobian
matching is the noise-free form of the right-hand side; we add

    R = (lambda / 2) E_x [ ||T(x) - S(x)||^2 + s^2 ||J_T(x) - J_S(x)||_F^2 ],
        lambda = cfg.reg_strength,  s = cfg.noise_std,  outputs = logits or softmax (cfg.reg_target)

to the student's cross-entropy. The soft-label (output-matching) term is kept because Prop. 2 is what
fixes the Jacobian term's loss and weight: without it the s^2 term is not the expansion of anything.
J_S is exact (C vector-Jacobian products, differentiable); J_T comes from the batched Jacobian of
study.measures.jacobian, without gradients.

The teacher is the trial `teacher_config(cfg)`: the same config with regularizer="none" (and the
regularizer fields at their defaults), so it trains on the very same data (the data depend only on
fields the two share) from the same initialization, with the same train(). It is trained once per
process and trial id (an in-process cache of the last few, trim_teacher_cache) and, if the environment
variable SENSITIVITY_TEACHER_CACHE names a directory, saved there as <teacher trial_id>.safetensors (the
state dict as safetensors, like the kept nets of study.weights: nothing is unpickled; a file that cannot be
read is ignored and the teacher trained again). Neither the cache nor its location enters any trial id. A teacher
that diverges fails the student's trial; one that does not reach its target accuracy is still used.
The student's time.train_s excludes the teacher's training.
"""

from __future__ import annotations

import os

import torch

from study.config import UNREGULARIZED, TrialConfig
from study.measures.jacobian import softmax_times, logit_jacobian
from study.models import build_model
from study.records import write_atomic
from study.regularizers.base import (Regularizer, forward_with_input_grad, output_jacobian, squared_norm_per_point,
                                     target_outputs)

TEACHER_CACHE_ENV = "SENSITIVITY_TEACHER_CACHE"
_TEACHERS: dict[str, dict[str, torch.Tensor]] = {}  # teacher trial_id -> CPU state dict, least recent first
TEACHER_CACHE_ENTRIES, TEACHER_CACHE_BYTES = 4, 256 * 1024 ** 2  # bounds of the in-process cache


def trim_teacher_cache(max_entries: int = TEACHER_CACHE_ENTRIES, max_bytes: int = TEACHER_CACHE_BYTES) -> None:
    """Forget the least recently used teachers beyond max_entries or max_bytes (a forgotten teacher is
    read from the disk cache or trained again: the same weights)."""
    size = lambda: sum(t.nbytes for state in _TEACHERS.values() for t in state.values())  # noqa: E731
    while _TEACHERS and (len(_TEACHERS) > max_entries or size() > max_bytes):
        _TEACHERS.pop(next(iter(_TEACHERS)))


def teacher_config(cfg: TrialConfig) -> TrialConfig:
    """The teacher of a jacobian_matching student: the same trial without any regularizer."""
    return cfg.replace(**UNREGULARIZED)


def _disk_path(trial_id: str) -> str | None:
    root = os.environ.get(TEACHER_CACHE_ENV)
    return os.path.join(root, f"{trial_id}.safetensors") if root else None


def _save(path: str, state: dict[str, torch.Tensor]) -> None:
    """Atomically (study.records.write_atomic): a concurrent reader sees no file or the whole one."""
    from safetensors.torch import save

    blob = save(state)
    write_atomic(os.path.dirname(path) or ".", os.path.basename(path), lambda sink: sink.write(blob))


def _load(path: str) -> dict[str, torch.Tensor] | None:
    """The cached state dict at `path`, or None if there is none or it cannot be read (trained again)."""
    from safetensors.torch import load

    try:
        with open(path, "rb") as handle:
            return load(handle.read())
    except FileNotFoundError:
        return None
    except Exception:  # noqa: BLE001 -- truncated or foreign: the teacher is trained again and the file replaced
        return None


def _loaded(teacher: torch.nn.Module, state: dict[str, torch.Tensor] | None) -> bool:
    """Load `state` into `teacher` if it fits (a cache file of another net under this name does not)."""
    if state is None:
        return False
    try:
        teacher.load_state_dict(state)
    except RuntimeError:
        return False
    return True


def load_or_train_teacher(cfg: TrialConfig, data) -> torch.nn.Module:
    """The trained teacher of student config `cfg` on the student's `data`, frozen, in eval mode."""
    from study.train import train  # study.train imports nothing from here; imported late to keep it so

    tcfg = teacher_config(cfg)
    key = tcfg.trial_id
    teacher = build_model(tcfg, data.n_features, data.n_classes, data.x_train.device)
    path = _disk_path(key)
    state = _TEACHERS.pop(key, None)
    if state is None and path is not None:
        state = _load(path)
    if not _loaded(teacher, state):
        teacher = build_model(tcfg, data.n_features, data.n_classes, data.x_train.device)  # afresh: a failed load
        outcome = train(teacher, data, tcfg)                                               # may have copied tensors
        if outcome.status == "diverged":
            raise RuntimeError(f"teacher trial {key} diverged ({outcome.message}); change lr or init_scale")
        state = {name: value.detach().cpu().clone() for name, value in teacher.state_dict().items()}
        if path is not None:
            _save(path, state)
    _TEACHERS[key] = state
    trim_teacher_cache()
    teacher.eval()
    teacher.requires_grad_(False)
    return teacher


def matching_terms(teacher: torch.nn.Module, model: torch.nn.Module, x: torch.Tensor, logits: torch.Tensor,
                   target: str = "logits") -> tuple[torch.Tensor, torch.Tensor]:
    """Per point ||T(x) - S(x)||^2 and ||J_T(x) - J_S(x)||_F^2, [B] each (student side differentiable)."""
    x, logits = forward_with_input_grad(model, x, logits)
    out_s = target_outputs(logits, target)
    jac_s = output_jacobian(out_s, x)
    with torch.no_grad():
        x0 = x.detach()
        out_t = teacher(x0)
        jac_t = logit_jacobian(teacher, x0).reshape(jac_s.shape)
        if target == "softmax":
            out_t = torch.softmax(out_t, dim=1)
            jac_t = softmax_times(out_t, jac_t)
    return (out_t - out_s).pow(2).sum(dim=1), squared_norm_per_point(jac_t - jac_s)


class JacobianMatching(Regularizer):
    """(lambda/2) E_x [||T - S||^2 + s^2 ||J_T - J_S||_F^2] against a teacher trained in `prepare`."""

    needs_input_grad = True

    def __init__(self, cfg: TrialConfig, teacher: torch.nn.Module | None = None) -> None:
        super().__init__(cfg)
        self.noise_var = float(cfg.noise_std) ** 2
        self.teacher = teacher

    def prepare(self, model, data) -> None:
        if self.teacher is None:
            self.teacher = load_or_train_teacher(self.cfg, data)

    def __call__(self, model, x, y, logits):
        if self.teacher is None:
            raise RuntimeError("jacobian_matching has no teacher: call prepare(model, data) first (study.train does)")
        out_sq, jac_sq = matching_terms(self.teacher, model, x, logits, self.target)
        return 0.5 * self.strength * (out_sq + self.noise_var * jac_sq).mean()
