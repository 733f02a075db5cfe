"""The sweep presets: declarative search spaces over TrialConfig fields, each with a default size.

A preset says which fields are pinned (`fixed`), which are drawn uniformly and independently from a
list of choices (`factors`), and which are drawn from a list that depends on another field's value
(`linked`, e.g. the learning rates of each optimizer). A `pairs` preset turns every sample into two
trials that differ in one binary factor. `sweeps.sampling` draws the configs; `describe(preset)` prints
the space. The presets:

- smoke   synthetic data, tiny nets, all 5 nonlinearities and optimizers; ~0.1 s a trial. What the tests run.
- quick   Fashion-MNIST, 1000 training images, the study's factors scaled for 2 CPU cores
          (most trials reach 100% train accuracy; its run time is measured in README.md). `make demo` runs it.
- paper   the reference study's grid as published (Novak et al. 2018, docs/science.md section 1), one GPU a
          trial, for clusters.
- pairs   the study's paired factors at the quick preset's scale: each sample is two trials identical
          but for random labels, augmentation, ReLU vs another nonlinearity, or full vs mini batch.
- grid    every combination of 6 axes at the quick preset's scale (true labels), N seeds each: trials that
          differ in one axis only, for Jiang et al.'s and Dziugaite et al.'s protocols.
- regularizers  the quick preset's space, each sample trained without a regularizer (the twin) and
          with each Jacobian regularizer at a grid of strengths (an `Intervention`); also fed from a
          finished sweep (`--from DIR --top K`, sweeps/feedback.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from study.config import UNREGULARIZED, ConfigError
from study.regularizer_table import TABLE as REGULARIZER_TABLE

STUDY_NONLINEARITIES = ("relu", "relu6", "tanh", "hardtanh", "hardsigmoid")
STUDY_OPTIMIZERS = ("sgd", "momentum", "adam", "rmsprop", "lbfgs")


@dataclass(frozen=True)
class PairFactor:
    """Two trials of a pair: the base config with `field` set to `base`, and with it set to one of `others`."""

    field: str
    base: Any
    others: tuple
    excludes: Mapping[str, tuple] = field(default_factory=dict)  # base values for which the factor is moot
    # The values a base config of this factor's pairs is drawn from, where the preset's are too wide: where
    # the factor is moot (L-BFGS is always full batch) or a net of the pair cannot fit in the budget.
    within: Mapping[str, tuple] = field(default_factory=dict)


@dataclass(frozen=True)
class Variant:
    """Settings applied on top of a base config (e.g. one regularizer at one strength); left out for a
    base whose value of a field in `excludes` is listed there (where the validation refuses it)."""

    settings: Mapping[str, Any]
    excludes: Mapping[str, tuple] = field(default_factory=dict)

    def label(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.settings.items())


@dataclass(frozen=True)
class Intervention:
    """Every base config runs as its twin (`baseline` applied: e.g. regularizer none and the other
    regularizer fields at their defaults) and once with each variant applied on top of the twin.
    All of a base's trials carry twin.factor = `factor` and twin_id = the twin's trial_id."""

    factor: str
    baseline: Mapping[str, Any]
    variants: tuple[Variant, ...]


@dataclass(frozen=True)
class Preset:
    name: str
    doc: str
    fixed: Mapping[str, Any]
    factors: Mapping[str, Sequence]
    linked: Mapping[str, tuple[str, Mapping[Any, Sequence]]] = field(default_factory=dict)
    pairs: tuple[PairFactor, ...] = ()
    default_n: int = 100
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    # Configs whose estimated memory (study.resources.estimate_bytes) exceeds this are redrawn: a fixed,
    # machine-independent cap, so the sample does not depend on where the driver runs.
    max_gib: float | None = None
    intervention: Intervention | None = None  # each sample is a base config and its variants
    grid: bool = False  # every combination of the factors (seed aside), N seeds each (sweeps.grid)


SMOKE = Preset(
    name="smoke",
    doc="Synthetic 8-d Gaussian mixture, 64 train / 64 test points, widths 8-16, depths 2-3, the 5 study "
        "nonlinearities and 5 optimizers, init 0.5-2, random labels 0/1, 60 steps, seeds 0..99999. "
        "About 0.1 s a trial; for tests and benchmarks of the machinery, not for science.",
    fixed={"dataset": "synthetic", "synthetic_dim": 8, "n_train": 64, "n_test": 64, "batch_size": 32,
           "max_steps": 60, "eval_every": 20, "n_trajectories": 1, "trajectory_points": 8},
    factors={"width": (8, 16), "depth": (2, 3), "nonlinearity": STUDY_NONLINEARITIES,
             "optimizer": STUDY_OPTIMIZERS, "init_scale": (0.5, 1.0, 2.0), "random_labels": (0.0, 1.0),
             "seed": range(100_000)},
    linked={"lr": ("optimizer", {"sgd": (0.1,), "momentum": (0.01,), "adam": (0.01,), "rmsprop": (0.003,),
                                 "lbfgs": (0.5,)})},
    default_n=20,
)

# quick: learning rates per optimizer and step budgets chosen so that most trials fit 1000 Fashion-MNIST
# images, random labels included (a probe with the paper's lr grid and 3000 steps fit only 25-55%);
# the measured fit fraction and wall time are in sweeps/README.md.
_QUICK_LR = {"sgd": (0.1, 0.05), "momentum": (0.01, 0.005), "adam": (0.002, 0.001),
             "rmsprop": (0.001, 0.0005), "lbfgs": (0.5, 1.0)}
_QUICK_FIXED = {"dataset": "fashion_mnist", "n_train": 1000, "n_test": 1000, "batch_size": 64,
                "eval_every": 50, "n_trajectories": 1, "trajectory_points": 32}

QUICK = Preset(
    name="quick",
    doc="Fashion-MNIST, 1000 training / 1000 test images, widths 128-512, depths 2-4, the 5 study "
        "nonlinearities, the 5 optimizers (learning rates per optimizer), init 0.5/1/2/4 x default, "
        "true or random labels, batch 64, at most 4000 steps (L-BFGS: 300 iterations), seeds 0..9999. "
        "N=100 takes a few minutes on 2 CPU cores (measured: README.md).",
    fixed=_QUICK_FIXED,
    factors={"width": (128, 256, 512), "depth": (2, 3, 4), "nonlinearity": STUDY_NONLINEARITIES,
             "optimizer": STUDY_OPTIMIZERS, "init_scale": (0.5, 1.0, 2.0, 4.0), "random_labels": (0.0, 1.0),
             "seed": range(10_000)},
    linked={"lr": ("optimizer", _QUICK_LR),
            "max_steps": ("optimizer", {"lbfgs": (300,), **{o: (4000,) for o in STUDY_OPTIMIZERS[:4]}})},
    default_n=100,
)

_PAPER_N_TRAIN = {"cifar10": (50_000,), "cifar100": (50_000,), "mnist": (60_000,), "fashion_mnist": (60_000,)}
PAPER = Preset(
    name="paper",
    doc="The reference study's grid as published (Novak et al. 2018; docs/science.md section 1): CIFAR10 and "
        "CIFAR100 center-cropped to 24x24, MNIST, Fashion-MNIST (whole training sets, 10,000 test points); "
        "widths 1, 2, 4, ..., 2^16; depths 2, 3, 5, 9, 17, 33, 65; the 5 nonlinearities; SGD, Momentum, "
        "Adam, RMSProp, L-BFGS (full batch, at most 2684 iterations); lr 0.01/0.005/0.0005; batch 128/512; "
        "init 0.5/1/4/8 x default; true or random labels; seeds 1..8; 2^19 steps; stop at 100% train "
        "accuracy (99.9% on CIFAR100). One GPU a trial. Configs estimated above 64 GiB (the widest, "
        "deepest corner, e.g. width 2^16 with 3+ layers) are redrawn.",
    fixed={"n_test": 10_000, "eval_every": 1000, "n_trajectories": 4, "trajectory_points": 64},
    factors={"dataset": ("cifar10", "cifar100", "mnist", "fashion_mnist"),
             "width": tuple(2 ** k for k in range(17)), "depth": (2, 3, 5, 9, 17, 33, 65),
             "nonlinearity": STUDY_NONLINEARITIES, "optimizer": STUDY_OPTIMIZERS,
             "lr": (0.01, 0.005, 0.0005), "batch_size": (128, 512), "init_scale": (0.5, 1.0, 4.0, 8.0),
             "random_labels": (0.0, 1.0), "seed": tuple(range(1, 9))},
    linked={"n_train": ("dataset", _PAPER_N_TRAIN),
            "target_accuracy": ("dataset", {"cifar100": (0.999,), "cifar10": (1.0,), "mnist": (1.0,),
                                            "fashion_mnist": (1.0,)}),
            "max_steps": ("optimizer", {"lbfgs": (2684,), **{o: (2 ** 19,) for o in STUDY_OPTIMIZERS[:4]}})},
    default_n=10_000,
    gpus_per_trial=1.0,
    max_gib=64.0,
)

_FITS = ("relu", "relu6", "tanh", "hardtanh")  # hardsigmoid fits slowly: 14 of 21 quick nets reached 100%
_FIRST_ORDER = ("sgd", "momentum", "adam", "rmsprop")
PAIRS = Preset(
    name="pairs",
    doc="The study's four paired factors at the quick preset's scale (Fashion-MNIST, 1000 images), each "
        "sample two trials identical but for one factor, the factors in turn (N/4 pairs each): random_labels "
        "0 vs 1 (not with SGD, which fit only 8 of 12 random-label quick nets); augment false vs true "
        "(translations by up to 1 pixel, true labels, first-order optimizers: at 2 pixels 3 of 4 probes "
        "stopped at 97-99% train accuracy in 4000 steps, random labels under augmentation do not fit, "
        "and L-BFGS's line search breaks on random batches); relu vs one of relu6/tanh/hardtanh; "
        "full_batch false vs true (first-order optimizers: L-BFGS is always full batch). Nonlinearities "
        "relu, relu6, tanh, hardtanh throughout (hardsigmoid fits slowly). Train accuracy is measured on "
        "the un-augmented training set. Linked by the pair_id and pair.factor columns. N counts pairs "
        "(2N trials).",
    fixed={**_QUICK_FIXED, "augment_shift": 1},
    factors={**QUICK.factors, "nonlinearity": _FITS},
    linked=QUICK.linked,
    pairs=(PairFactor("random_labels", 0.0, (1.0,), within={"optimizer": ("momentum", "adam", "rmsprop", "lbfgs")}),
           PairFactor("augment", False, (True,), within={"random_labels": (0.0,), "optimizer": _FIRST_ORDER}),
           PairFactor("nonlinearity", "relu", ("relu6", "tanh", "hardtanh")),
           PairFactor("full_batch", False, (True,), within={"optimizer": _FIRST_ORDER})),
    default_n=60,
)

def _variant(settings: dict[str, Any]) -> Variant:
    """One regularizer at one setting; a stochastic one (study.regularizer_table) never with L-BFGS, whose line
    search its fresh randomness breaks (study.config refuses the combination)."""
    stochastic = REGULARIZER_TABLE[settings["regularizer"]].stochastic
    return Variant(settings, {"optimizer": ("lbfgs",)} if stochastic else {})


# Strengths from a probe on a quick-preset net (128x3 relu6, momentum, random labels; logit Jacobian 30):
# jacobian lambda 0.001 / 0.01 cut its softmax Jacobian 2.5 -> 2.0 / 1.0 and still fit; input noise 0.3
# fit, 1.0 did not; jacobian_matching 0.01 fit, 0.1 and 1 did not; bias_jacobian barely moved it at
# 1-100 (the paper's CIFAR100 value is 100).
REGULARIZER_GRID = (
    *(_variant({"regularizer": "jacobian", "reg_strength": s}) for s in (0.001, 0.01)),
    *(_variant({"regularizer": "jacobian_proj", "reg_strength": s}) for s in (0.001, 0.01)),
    *(_variant({"regularizer": "bias_jacobian", "reg_strength": s}) for s in (1.0, 100.0)),
    *(_variant({"regularizer": "input_noise", "noise_std": s}) for s in (0.1, 0.3)),
    *(_variant({"regularizer": "jacobian_matching", "reg_strength": s, "noise_std": 0.1}) for s in (0.01, 0.03)),
)

REGULARIZERS = Preset(
    name="regularizers",
    doc="The quick preset's space (Fashion-MNIST, 1000 images, widths 128-512, depths 2-4, the 5 "
        "nonlinearities and 5 optimizers, init 0.5-4, true or random labels), each sample trained without a "
        "regularizer (its twin) and with each regularizer at 2 strengths: jacobian and jacobian_proj "
        "lambda 0.001/0.01, bias_jacobian lambda 1/100, input_noise sigma 0.1/0.3, jacobian_matching lambda "
        "0.01/0.03 with s=0.1 (logit target, 1 projection); jacobian_proj and input_noise never with L-BFGS. "
        "All of a base's trials share twin.factor=regularizer and twin_id=the twin's trial_id. N counts base "
        "configs (11, or 7 with L-BFGS, trials each). --set regularizer=..., reg_strength=..., noise_std=... "
        "keep only the listed variants. With --from DIR --top K (or --where EXPR) the bases are the K "
        "largest-gap trials of a finished sweep instead (sweeps/feedback.py).",
    fixed=_QUICK_FIXED,
    factors=QUICK.factors,
    linked=QUICK.linked,
    intervention=Intervention("regularizer", UNREGULARIZED, REGULARIZER_GRID),
    default_n=10,
)

# grid: the quick preset's training data and budget, true labels, 6 axes of 2 values (64 grid points); the
# learning rates are the quick preset's first per optimizer. The whole Fashion-MNIST test set (10,000 images):
# the robust sign error trusts a gap difference only past its Hoeffding noise weight, which at 1,000 test images
# is 0 below |delta gap| = 0.037, and no environment of a 1,000-image grid kept its effective sample size.
GRID = Preset(
    name="grid",
    doc="Every combination of 6 axes on Fashion-MNIST (1000 training images, the whole 10,000-image test set, true "
        "labels): width "
        "128/512, depth 2/4, nonlinearity relu/tanh, optimizer sgd (lr 0.1)/adam (lr 0.002), init 1/2 x default, "
        "batch size 32/128; N = seeds per grid point (default 5: 320 trials), the same seeds at every point. "
        "Trials that differ in one axis only, for the granulated Kendall Psi, the CMI score and the robust sign "
        "error. --set AXIS=v1,v2 narrows an axis, --set AXIS=v pins it.",
    fixed={k: v for k, v in _QUICK_FIXED.items() if k != "batch_size"} | {"n_test": 10_000, "random_labels": 0.0},
    factors={"width": (128, 512), "depth": (2, 4), "nonlinearity": ("relu", "tanh"), "optimizer": ("sgd", "adam"),
             "init_scale": (1.0, 2.0), "batch_size": (32, 128), "seed": range(10_000)},
    linked={"lr": ("optimizer", {"sgd": (0.1,), "adam": (0.002,)}),
            "max_steps": ("optimizer", {"sgd": (4000,), "adam": (4000,)})},
    default_n=5,  # 3 seeds give an environment of the robust sign error 9 pairs: below its ESS of 12
    grid=True,
)

PRESETS: dict[str, Preset] = {p.name: p for p in (SMOKE, QUICK, PAPER, PAIRS, REGULARIZERS, GRID)}


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; presets: {', '.join(PRESETS)}")
    return PRESETS[name]


def _choices(values: Sequence) -> str:
    if isinstance(values, range):
        return f"{values.start}..{values.stop - 1}"
    return "/".join(str(v) for v in values)


def describe(preset: Preset) -> str:
    """The sampled space as text (for --help, the README and the sweep metadata)."""
    lines = [f"{preset.name}: {preset.doc}",
             f"  default N: {preset.default_n}" + (" (seeds per grid point)" if preset.grid else "")]
    lines += [f"  {k} = {v}" for k, v in preset.fixed.items() if k not in preset.linked]
    lines += [f"  {k} in {_choices(v)}" for k, v in preset.factors.items()]
    for name, (parent, table) in preset.linked.items():
        lines.append(f"  {name} by {parent}: " + ", ".join(f"{k}: {_choices(v)}" for k, v in table.items()))
    for pf in preset.pairs:
        lines.append(f"  pair factor {pf.field}: {pf.base} vs {_choices(pf.others)}")
    if preset.intervention:
        iv = preset.intervention
        lines.append("  twin: " + ", ".join(f"{k}={v}" for k, v in iv.baseline.items()))
        for variant in iv.variants:
            excluded = "".join(f" (not with {k} {_choices(v)})" for k, v in variant.excludes.items())
            lines.append(f"  variant: {variant.label()}{excluded}")
    return "\n".join(lines)
