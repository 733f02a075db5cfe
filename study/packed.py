"""Packed trials: S networks of one architecture trained as one batched computation.

Small nets leave a CPU (and even more a GPU) idle: per step, Python and kernel-launch overhead
dominate the arithmetic. Packing trains S nets that share an architecture and a training schedule
(`pack_key`) together: their parameters live in one flat vector, layer-major
([W_1 of every net, b_1 of every net, W_2, ...]), so layer l of all nets is a contiguous
[S, out, in] block (study.packed_layout) and one step is a few batched matmuls plus one optimizer update
of the whole vector (study.packed_optim).

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

import torch
import torch.nn.functional as F

from study.config import ConfigError, TrialConfig
from study.data import Dataset, augment, load_dataset
from study.datasets import TABLE as DATASET_TABLE
from study.models import MLP, build_model, count_parameters
from study.packed_layout import Layout, forward, hits, runs
from study.packed_optim import PACKABLE_OPTIMIZERS, PackedOptimizer
from study.regularizers import make_penalty
from study.resources import available_bytes, check_memory, estimate_bytes, resolve_device
from study.train import Minibatches, Penalty, TrainOutcome
from study.trial import TrialResult, base_record, finish_trial, run_trial

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


class _PenaltyCall(torch.nn.Module):
    """Calls a penalty on `net`, so that torch.func.functional_call can swap in one packed net's parameters."""

    def __init__(self, net: MLP) -> None:
        super().__init__()
        self.net = net
        self.penalty: Penalty | None = None

    def forward(self, x: torch.Tensor, y: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        return self.penalty(self.net, x, y, logits)


def train_packed(models: list[MLP], datas: list[Dataset], cfgs: list[TrialConfig],
                 penalties: list[Penalty | None] | None = None) -> list[TrainOutcome]:
    """Train models[i] on datas[i] under cfgs[i], all at once, in place; outcomes as study.train.train's.

    The configs must share pack_key and use an elementwise optimizer. Penalties (regularizers) are
    honoured as study.train does: `prepare(model, data)` once before training, `perturb(x)` on every
    training batch, the penalty added to the net's loss. A penalty runs on one net at a time, on a
    template MLP holding that net's slice of the packed parameters (torch.func.functional_call); it
    gets a batch that does not require grad, so input-gradient penalties run their own forward."""
    cfg0, count = cfgs[0], len(cfgs)
    if len({pack_key(c) for c in cfgs}) != 1 or cfg0.optimizer not in PACKABLE_OPTIMIZERS:
        raise ConfigError("train_packed needs configs with one pack_key and an elementwise optimizer")
    penalties = penalties or [None] * count
    for penalty, model, data in zip(penalties, models, datas):
        if penalty is not None and hasattr(penalty, "prepare"):
            penalty.prepare(model, data)
    perturbs = [getattr(p, "perturb", None) for p in penalties]
    start_time = time.perf_counter()
    device = datas[0].x_train.device
    n = datas[0].x_train.shape[0]
    full_batch = cfg0.full_batch or cfg0.batch_size >= n
    batch = n if full_batch else cfg0.batch_size
    flip = DATASET_TABLE[datas[0].name].flip
    act = models[0].act
    layout = Layout([models[0].layers[0].in_features] + [layer.out_features for layer in models[0].layers])

    # Nets ordered by stream, so that the nets sharing a minibatch sequence are a contiguous block.
    stream_seed = [c.seed_for("train") for c in cfgs]
    active = sorted(range(count), key=lambda i: stream_seed.index(stream_seed[i]))
    streams = {}
    for i in active:
        streams.setdefault(stream_seed[i], Minibatches(stream_seed[i], datas[i].x_train, batch, full_batch))
    labels = torch.stack([datas[i].y_train for i in active])  # [S, n], row = position in `active`
    theta = torch.cat([torch.stack([getattr(models[i].layers[l], name).detach() for i in active]).reshape(-1)
                       for l in range(len(models[0].layers)) for name in ("weight", "bias")])
    optimizer = PackedOptimizer(cfg0.optimizer, [cfgs[i].lr for i in active], theta, layout)
    template = None
    if any(p is not None for p in penalties):
        template = _PenaltyCall(MLP(layout.shapes[0][1], cfg0.width, cfg0.depth, layout.shapes[-1][0],
                                    cfg0.nonlinearity).to(device))
    outcomes: list[TrainOutcome | None] = [None] * count
    accuracies = [0.0] * count
    steps = 0

    def leave(positions: list[int], status: str, message: str) -> None:
        """Copy the nets at these positions out into their models, record outcomes, drop them from the pack."""
        nonlocal theta, labels, active, streams
        if not positions:
            return
        params = layout.split(theta, len(active))
        with torch.no_grad():
            for pos in positions:
                i = active[pos]
                for t, p in zip(params, (q for layer in models[i].layers for q in (layer.weight, layer.bias))):
                    p.copy_(t[pos])
                models[i].eval()
                outcomes[i] = TrainOutcome(status, steps, accuracies[i], (time.perf_counter() - start_time) / count,
                                           message.format(acc=accuracies[i], target=cfgs[i].target_accuracy))
        keep = torch.tensor([p for p in range(len(active)) if p not in set(positions)], dtype=torch.long, device=device)
        theta = layout.select(theta, len(active), keep)
        optimizer.select(layout, len(active), keep)
        labels = labels.index_select(0, keep)
        active = [active[p] for p in keep.tolist()]
        # a stream whose nets have all left stops drawing (alone, its generator would stop too)
        streams = {seed: s for seed, s in streams.items() if any(stream_seed[i] == seed for i in active)}

    while steps < cfg0.max_steps and active:
        for _ in range(min(cfg0.eval_every, cfg0.max_steps - steps)):
            drawn = {}  # stream -> (minibatch rows or None for the full batch, inputs), in train.py's order
            for seed, s in streams.items():
                index = s.next_index()
                xb = s.x if index is None else s.x.index_select(0, index)
                if cfg0.augment:
                    xb = augment(xb, datas[0].image_shape, cfg0.augment_shift, flip, s.gen)
                drawn[seed] = (index, xb)
            inputs = [drawn[stream_seed[i]][1] for i in active]
            inputs = [x if perturbs[i] is None else perturbs[i](x) for x, i in zip(inputs, active)]
            yb = []
            for a, b in runs([stream_seed[i] for i in active]):
                index = drawn[stream_seed[active[a]]][0]
                yb.append(labels[a:b] if index is None else labels[a:b].index_select(1, index))
            yb = yb[0] if len(yb) == 1 else torch.cat(yb)
            # Leaves: the first layer per input group (a slice of a leaf would zero-fill its whole gradient
            # in backward, once per group), the other layers whole.
            params = layout.split(theta, len(active))
            spans = runs([id(x) for x in inputs])  # nets that share an input: one wide matmul
            groups = [inputs[a] for a, _ in spans]
            if len(spans) > GROUPED_MAX and not full_batch:  # many minibatches: stacked, one bmm beats a matmul each
                spans, groups = [(0, len(active))], [torch.stack(inputs)]
            firsts = [(params[0][a:b].detach().requires_grad_(True), params[1][a:b].detach().requires_grad_(True))
                      for a, b in spans]
            rest = [t.detach().requires_grad_(True) for t in params[2:]]
            logits = forward([(w, b, x) for (w, b), x in zip(firsts, groups)], rest, act)  # [S, C, B]
            losses = F.cross_entropy(logits, yb, reduction="none").mean(1)
            if template is not None:
                group = [g for g, (a, b) in enumerate(spans) for _ in range(a, b)]
                losses = losses + torch.stack([
                    _penalty(template, penalties[i], [firsts[group[pos]][0][pos - spans[group[pos]][0]],
                                                      firsts[group[pos]][1][pos - spans[group[pos]][0]]]
                             + [t[pos] for t in rest], inputs[pos], yb[pos], logits[pos].T)
                    for pos, i in enumerate(active)])
            finite = torch.isfinite(losses)
            steps += 1
            leaves = [w for w, _ in firsts] + [b for _, b in firsts] + rest
            keep = None if bool(finite.all()) else finite.nonzero().flatten()
            grads = None
            if keep is None or len(keep):  # nets with a non-finite loss stop here, unchanged (as in train.py)
                grads = torch.autograd.grad(losses.sum() if keep is None else losses[keep].sum(), leaves)
                k = len(firsts)
                join = lambda gs: gs[0] if len(gs) == 1 else torch.cat(gs)  # noqa: E731
                grads = [join(grads[:k]), join(grads[k:2 * k])] + list(grads[2 * k:])
            if keep is not None:
                leave((~finite).nonzero().flatten().tolist(), "diverged", f"non-finite training loss at step {steps}")
                if not active:
                    break
                grads = [g.index_select(0, keep) for g in grads]
            optimizer.step(layout, theta, grads)
        if not active:
            break
        # non-finite weights end training ("diverged"), as in train.py
        params = layout.split(theta, len(active))
        finite_nets = torch.stack([torch.isfinite(t.reshape(len(active), -1)).all(1) for t in params]).all(0)
        leave((~finite_nets).nonzero().flatten().tolist(), "diverged", f"non-finite loss or weights by step {steps}")
        if not active:
            break
        correct = hits(layout.split(theta, len(active)), [stream_seed[i] for i in active], streams, labels, act)
        for pos, i in enumerate(active):
            accuracies[i] = correct[pos] / max(1, n)
        leave([pos for pos, i in enumerate(active) if accuracies[i] >= cfgs[i].target_accuracy], "ok", "")
    leave(list(range(len(active))), "not_fit", "train accuracy {acc:.4f} < {target} after " + f"{steps} steps")
    return outcomes


def _penalty(template: _PenaltyCall, penalty: Penalty | None, params: list[torch.Tensor], x: torch.Tensor,
             y: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """One net's penalty, computed on a template MLP holding that net's parameters (views into the pack's leaves)."""
    if penalty is None:
        return logits.new_zeros(())
    template.penalty = penalty
    names = [f"net.layers.{l}.{kind}" for l in range(len(params) // 2) for kind in ("weight", "bias")]
    return torch.func.functional_call(template, dict(zip(names, params)), (x, y, logits))


# -- trials ---------------------------------------------------------------------------------------

@dataclass
class _Prepared:
    cfg: TrialConfig
    data: Dataset
    model: MLP
    record: dict
    data_s: float


def run_packed(cfgs: list[TrialConfig], device: str | torch.device = "cpu", data_root: str | None = None,
               threads: int | None = None, download: bool = True) -> list[TrialResult]:
    """run_trial for each config, with the training of all of them done as one packed computation.

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
    one_by_one = lambda: [run_trial(c, device, data_root, download=download) for c in cfgs]  # noqa: E731
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
        record["model.n_neurons"] = model.n_neurons()
        prepared.append(_Prepared(cfg, data, model, record, time.perf_counter() - t0))
        record["time.data_s"] = prepared[-1].data_s
    try:
        outcomes = train_packed([p.model for p in prepared], [p.data for p in prepared], cfgs, penalties)
    except ConfigError:
        raise
    except Exception:  # noqa: BLE001 -- alone, each trial records (or avoids) the error itself
        return one_by_one()
    return [finish_trial(p.cfg, p.record, p.model, p.data, device, outcome, p.data_s + outcome.seconds)
            for p, outcome in zip(prepared, outcomes)]
