"""Packed trials: S networks of one architecture trained as one batched computation.

Small nets leave a CPU (and even more a GPU) idle: per step, Python and kernel-launch overhead
dominate the arithmetic. Packing trains S nets that share an architecture and a training schedule
(`pack_key`) together: their parameters live in one flat vector, layer-major
([W_1 of every net, b_1 of every net, W_2, ...]), so layer l of all nets is a contiguous
[S, out, in] block (study.packed_layout) and one step is a few batched matmuls plus one optimizer update
of the whole vector (study.packed_optim). study.packed_steps holds a pack's state and runs its steps.

Exactness. Each net sees what it would see alone (study.train.train):
- its own data subset, labels (random labels included) and initial weights (study.data.load_dataset,
  study.models.build_model on its own config);
- its own minibatch sequence: one torch.Generator per distinct `seed_for("train")` (the
  "stream"), a study.train.Minibatches as train.py draws it (randperm when an epoch ends, then
  augmentation). Nets with the same stream see the same minibatches, so their first layer is one wide matmul
  [k * width, d] @ x^T; with more than GROUPED_MAX distinct minibatches in a step, they are stacked
  and the first layer is one batched matmul over all nets (never the full batch: that would copy the
  training sets every step);
- its own regularizer, with train.py's hooks (prepare, perturb, the penalty on its own loss);
- its own optimizer: SGD, momentum, Adam and RMSProp are elementwise, so updating the packed
  parameters with a per-net learning rate is torch.optim's update of each net (see study.packed_optim;
  L-BFGS is not elementwise and runs alone, through run_trial);
- its own stopping: accuracy on its own training set every `eval_every` steps; a net that reaches
  its `target_accuracy`, diverges (non-finite loss or weights) or runs out of steps is copied out
  into its MLP and dropped from the pack, which goes on with the others.
Sums over a minibatch are done by different kernels (bmm instead of mm), so the numbers agree to
float32 rounding, not bit for bit (tests/test_packed.py). Long chaotic trainings (random labels,
thousands of Adam steps) amplify that rounding as they would any other change of summation order
(threads, BLAS, GPU): such a net can end in another minimum. Records carry `env.pack_size`.
After training every net is measured exactly as run_trial does (study.trial.finish_trial on its own
MLP and data), so its records are run_trial's records.

`time.train_s` of a packed net is its share of the pack's training wall time: the time until it
left the pack divided by the pack size. benchmarks/bench_packed.py measures the speedup.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, fields
from typing import Iterable

import torch

from study.config import ConfigError, TrialConfig
from study.data import Dataset, load_dataset
from study.models import MLP, build_model, count_parameters
from study.packed_optim import PACKABLE_OPTIMIZERS
from study.packed_steps import Pack
from study.regularizers import make_penalty
from study.resources import available_bytes, check_memory, estimate_bytes, resolve_device
from study.train import Penalty, TrainOutcome
from study.trial import TrialResult, base_record, describe_model, finish_trial, run_trial

# Fields that may differ inside a pack; every other TrialConfig field is part of the pack key
# (so a field added to TrialConfig later separates packs until someone decides otherwise).
FREE_FIELDS = ("seed", "init_scale", "lr", "random_labels", "reg_strength", "target_accuracy",
               "n_trajectories", "trajectory_points")
PACK_FIELDS = tuple(f.name for f in fields(TrialConfig) if f.name not in FREE_FIELDS)
GROUPED_MAX = 2  # up to this many distinct inputs per step, a wide first-layer matmul per input; above, one bmm


def pack_key(cfg: TrialConfig) -> tuple:
    """((field, value), ...) for every TrialConfig field except FREE_FIELDS.

    Configs with equal keys have the same data shapes, architecture, optimizer, batch schedule,
    step budget, evaluation cadence, augmentation and regularizer kind; they may differ in seed (data
    subset, minibatch order, initial weights), init_scale, lr, random_labels, reg_strength,
    target_accuracy and the measures' trajectory settings."""
    return tuple((name, getattr(cfg, name)) for name in PACK_FIELDS)


def group_into_packs(cfgs: list[TrialConfig], size: int) -> list[list[TrialConfig]]:
    """Split configs into packs of at most `size` configs with equal pack_key.

    Packs keep the order in which keys first appear; inside a key, configs are sorted by seed
    (stable) so that nets sharing a minibatch sequence land in the same pack. L-BFGS configs, which
    do not pack, get a pack each."""
    if not isinstance(size, int) or size < 1:
        raise ConfigError(f"pack size must be a positive integer, got {size!r}")
    groups: dict[tuple, list[TrialConfig]] = {}
    for cfg in cfgs:
        groups.setdefault(pack_key(cfg), []).append(cfg)
    packs: list[list[TrialConfig]] = []
    for members in groups.values():
        if members[0].optimizer not in PACKABLE_OPTIMIZERS:
            packs.extend([cfg] for cfg in members)
            continue
        members = sorted(members, key=lambda c: c.seed)
        packs.extend(members[i:i + size] for i in range(0, len(members), size))
    return packs


def train_packed(models: list[MLP], datas: list[Dataset], cfgs: list[TrialConfig],
                 penalties: list[Penalty | None] | None = None) -> list[TrainOutcome]:
    """Train models[i] on datas[i] under cfgs[i], all at once, in place; outcomes as study.train.train's.

    The configs must share pack_key and use an elementwise optimizer. Penalties (regularizers) are
    honoured as study.train does: `prepare(model, data)` once before training, `perturb(x)` on every
    training batch, the penalty added to the net's loss. A penalty runs on one net at a time, on a
    template MLP holding that net's slice of the packed parameters (torch.func.functional_call); it
    gets a batch that does not require grad, so input-gradient penalties run their own forward.
    The pack's state and steps are study.packed_steps.Pack's."""
    cfg0 = cfgs[0]
    if len({pack_key(c) for c in cfgs}) != 1 or cfg0.optimizer not in PACKABLE_OPTIMIZERS:
        raise ConfigError("train_packed needs configs with one pack_key and an elementwise optimizer")
    penalties = penalties or [None] * len(cfgs)
    for penalty, model, data in zip(penalties, models, datas):
        if penalty is not None and hasattr(penalty, "prepare"):
            penalty.prepare(model, data)
    pack = Pack(models, datas, cfgs, penalties, GROUPED_MAX)
    while pack.steps < cfg0.max_steps and pack.active:
        for _ in range(min(cfg0.eval_every, cfg0.max_steps - pack.steps)):
            pack.step()
            if not pack.active:
                break
        if pack.active:
            pack.drop_non_finite()
        if pack.active:
            pack.evaluate()
    return pack.finish()


# -- trials ---------------------------------------------------------------------------------------

@dataclass
class _Prepared:
    cfg: TrialConfig
    data: Dataset
    model: MLP
    record: dict
    data_s: float


def run_packed(cfgs: list[TrialConfig], device: str | torch.device = "cpu", data_root: str | None = None,
               threads: int | None = None, download: bool = True,
               skip_measures: Iterable[str] = ()) -> list[TrialResult]:
    """run_trial for each config, with the training of all of them done as one packed computation (each net
    measured by every registered measure but `skip_measures`, as run_trial).

    The configs must share `pack_key` (see group_into_packs). Returns one TrialResult per config, in
    order, equal to run_trial's up to float32 rounding and timings. L-BFGS configs, a single config,
    or a pack that would not fit in memory run one by one with run_trial."""
    cfgs = list(cfgs)
    if not cfgs:
        return []
    if len({pack_key(c) for c in cfgs}) != 1:
        differ = [name for name in PACK_FIELDS if len({getattr(c, name) for c in cfgs}) > 1]
        raise ConfigError(f"run_packed needs configs that differ only in {', '.join(FREE_FIELDS)}; these differ in "
                          f"{', '.join(differ)}: split them with group_into_packs(cfgs, size)")
    device = resolve_device(device) if isinstance(device, str) else device
    if threads is not None:
        torch.set_num_threads(max(1, int(threads)))
    one_by_one = lambda: [run_trial(c, device, data_root, download=download, skip_measures=skip_measures)  # noqa: E731
                          for c in cfgs]
    if len(cfgs) == 1 or cfgs[0].optimizer not in PACKABLE_OPTIMIZERS:
        return one_by_one()
    for cfg in cfgs:
        check_memory(cfg, device)
    if sum(estimate_bytes(c) for c in cfgs) > available_bytes(device):
        return one_by_one()
    penalties = [make_penalty(c) for c in cfgs]  # validates every regularizer before any work
    prepared = []
    for cfg in cfgs:
        t0 = time.perf_counter()
        data = load_dataset(cfg, data_root=data_root, device=device, download=download)
        record = base_record(cfg, device, pack_size=len(cfgs))
        record.update({"data.n_features": data.n_features, "data.n_classes": data.n_classes,
                       "model.n_params": count_parameters(data.n_features, cfg.width, cfg.depth, data.n_classes)})
        model = build_model(cfg, data.n_features, data.n_classes, device)
        describe_model(record, model)
        prepared.append(_Prepared(cfg, data, model, record, time.perf_counter() - t0))
        record["time.data_s"] = prepared[-1].data_s
    try:
        outcomes = train_packed([p.model for p in prepared], [p.data for p in prepared], cfgs, penalties)
    except ConfigError:
        raise
    except Exception:  # noqa: BLE001 -- alone, each trial records (or avoids) the error itself
        return one_by_one()
    return [finish_trial(p.cfg, p.record, p.model, p.data, device, outcome, p.data_s + outcome.seconds,
                         skip_measures) for p, outcome in zip(prepared, outcomes)]
