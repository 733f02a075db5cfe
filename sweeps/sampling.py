"""Which trials a sweep asks for: a seeded, deterministic function of (preset, overrides, seed, N).

Draw i (i = 0, 1, 2, ...) uses its own generator, seeded from sha256(preset, overrides, seed) and i,
so the sample of N is a prefix of the sample of N + 100 (raising N extends a sweep) and a rerun of the
same command asks for exactly the same trials. Draws are deduplicated by trial_id:

- N counts *distinct* trials (for a pairs preset, distinct pairs: 2N trials, no trial in two pairs, the
  factors in turn; for an intervention preset, distinct base configs, each run as its twin and every variant).
- When the space is small (say `--set` pins all but one factor with 3 choices), draws stop after
  20 N + 1000 attempts and the sweep is the distinct configs found, fewer than N; `Sample.exhausted`
  says so and the CLI prints it.
- Configs above the preset's memory cap (`Preset.max_gib`) are redrawn, so they also count as attempts.

`--set FIELD=VALUE` pins a field (it is no longer drawn, and a linked field stops following its parent);
`--set FIELD=v1,v2,...` draws FIELD from those values instead of the preset's choices. On a field of an
intervention's baseline (e.g. `regularizer`, `reg_strength`) it keeps only the variants with those values.

sweeps.feedback.expand_bases makes the same kind of sample from given base configs instead of draws.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from typing import Any, Sequence

import numpy as np

from study.config import ConfigError, TrialConfig, coerce, parse_assignment
from study.resources import GIB, estimate_bytes
from sweeps.presets import Intervention, PairFactor, Preset

Overrides = dict[str, tuple]


@dataclass(frozen=True)
class PlannedTrial:
    config: TrialConfig
    pair_id: str | None = None  # a two-trial pair of the pairs preset: both trials carry it
    pair_factor: str | None = None  # the one field in which the pair's two trials differ
    twin_id: str | None = None  # an intervention preset's group: the trial_id of the group's untreated twin
    twin_factor: str | None = None  # the field the intervention varies (e.g. regularizer)

    @property
    def trial_id(self) -> str:
        return self.config.trial_id


@dataclass(frozen=True)
class Sample:
    trials: tuple[PlannedTrial, ...]
    requested: int  # N
    exhausted: bool  # fewer than N distinct trials (pairs) exist or were found within the draw limit
    sweep_id: str  # sha256 of (preset, overrides, seed, N[, base ids]), 12 hex digits
    notes: tuple[str, ...] = ()  # what the CLI should print about the sample (e.g. bases left out)


def parse_overrides(assignments: Sequence[str]) -> Overrides:
    """['width=64', 'nonlinearity=relu,tanh'] -> {'width': (64,), 'nonlinearity': ('relu', 'tanh')}.

    Unknown fields and values of the wrong type raise ConfigError; a later --set of a field wins."""
    out: Overrides = {}
    for text in assignments:
        name, raw = parse_assignment(text)
        parts = [p.strip() for p in raw.split(",")]
        if any(p == "" for p in parts):
            raise ConfigError(f"--set {name}= needs a value or a comma-separated list of values, got {raw!r}")
        values = tuple(dict.fromkeys(coerce(name, p) for p in parts))
        out[name] = values
    return out


@dataclass(frozen=True)
class Space:
    """A preset with the overrides applied."""

    fixed: dict[str, Any]
    factors: dict[str, Sequence]
    linked: dict[str, tuple[str, dict]]
    pairs: tuple[PairFactor, ...]
    is_pairs: bool
    max_gib: float | None
    intervention: Intervention | None = None


def narrow_intervention(preset: Preset, overrides: Overrides) -> Intervention | None:
    """The preset's intervention keeping only the variants whose values of the overridden baseline
    fields are listed (`--set regularizer=jacobian,input_noise`); ConfigError if none is left."""
    iv = preset.intervention
    if iv is None:
        return None
    listed = {k: v for k, v in overrides.items() if k in iv.baseline}
    kept = tuple(v for v in iv.variants
                 if all({**iv.baseline, **v.settings}[k] in values for k, values in listed.items()))
    if not kept:
        given = " ".join(f"--set {k}={','.join(map(str, v))}" for k, v in listed.items())
        raise ConfigError(f"{given} keeps no variant of preset {preset.name}; its variants: "
                          + "; ".join(v.label() for v in iv.variants))
    return Intervention(iv.factor, iv.baseline, kept)


def apply_overrides(preset: Preset, overrides: Overrides) -> Space:
    intervention = narrow_intervention(preset, overrides)
    if intervention is not None:  # the baseline fields select variants; the base keeps the baseline
        overrides = {k: v for k, v in overrides.items() if k not in intervention.baseline}
    fixed = {k: v for k, v in preset.fixed.items() if k not in overrides}
    factors = {k: v for k, v in preset.factors.items() if k not in overrides}
    linked = {k: (p, dict(t)) for k, (p, t) in preset.linked.items() if k not in overrides}
    for name, values in overrides.items():
        if len(values) == 1:
            fixed[name] = values[0]
        else:
            factors[name] = values
    for name, (parent, table) in linked.items():
        parent_values = factors.get(parent, (fixed.get(parent, getattr(TrialConfig, parent)),))
        missing = [v for v in parent_values if v not in table]
        if missing:
            raise ConfigError(f"{name} follows {parent} in preset {preset.name}, which has no {name} for "
                              f"{parent}={missing[0]!r} (it has: {', '.join(map(str, table))}); "
                              f"set {name} too, e.g. --set {name}=VALUE")
    pairs = []
    for pf in preset.pairs:
        if pf.field not in overrides:
            pairs.append(pf)
            continue
        values = overrides[pf.field]
        others = tuple(v for v in pf.others if v in values)
        if len(values) > 1 and pf.base in values and others:
            pairs.append(PairFactor(pf.field, pf.base, others, pf.excludes, pf.within))
    pairs = [pf for pf in pairs if _narrowed(fixed, factors, pf) is not None]
    if preset.pairs and not pairs:
        raise ConfigError(f"--set pins every paired factor of preset {preset.name} "
                          f"({', '.join(pf.field for pf in preset.pairs)}) or leaves it no base config "
                          "(see `sensitivity sweep --help`); leave at least one free")
    return Space(fixed, factors, linked, tuple(pairs), bool(preset.pairs), preset.max_gib, intervention)


def _base_seed(preset: str, overrides: Overrides, seed: int) -> int:
    payload = json.dumps({"preset": preset, "overrides": {k: list(v) for k, v in sorted(overrides.items())},
                          "seed": seed}, sort_keys=True)
    return int.from_bytes(hashlib.sha256(payload.encode()).digest()[:8], "little")


def sweep_id(preset: str, overrides: Overrides, seed: int, n: int, bases: Sequence[str] | None = None) -> str:
    content = {"preset": preset, "overrides": {k: list(v) for k, v in sorted(overrides.items())}, "seed": seed, "n": n}
    if bases is not None:  # a sweep fed from another one: its base configs, in order
        content["bases"] = list(bases)
    payload = json.dumps(content, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def _draw(space: Space, rng: np.random.Generator) -> dict[str, Any]:
    values = dict(space.fixed)
    for name in sorted(space.factors):
        choices = space.factors[name]
        values[name] = choices[int(rng.integers(len(choices)))]
    for name in sorted(space.linked):
        parent, table = space.linked[name]
        choices = table[values.get(parent, getattr(TrialConfig, parent))]
        values[name] = choices[int(rng.integers(len(choices)))]
    return values


def config_of(values: dict[str, Any]) -> TrialConfig:
    """The TrialConfig of drawn values (numpy scalars made Python ones); ConfigError if invalid."""
    return TrialConfig(**{k: (v.item() if isinstance(v, np.generic) else v) for k, v in values.items()})


def within_cap(space: Space, cfg: TrialConfig) -> bool:
    """The config's memory estimate is within the preset's cap (if it has one)."""
    return space.max_gib is None or estimate_bytes(cfg) <= space.max_gib * GIB


def pair_id_of(a: TrialConfig, b: TrialConfig) -> str:
    return hashlib.sha256("|".join(sorted((a.trial_id, b.trial_id))).encode()).hexdigest()[:16]


def _narrowed(fixed: dict[str, Any], factors: dict[str, Sequence], pf: PairFactor) -> dict[str, Sequence] | None:
    """The factors a base config of `pf`'s pairs is drawn from (`pf.within` applied); None if a fixed value
    or an emptied factor leaves no base for it."""
    narrowed = dict(factors)
    for name, allowed in pf.within.items():
        if name in factors:
            narrowed[name] = tuple(v for v in factors[name] if v in allowed)
            if not narrowed[name]:
                return None
        elif fixed.get(name, getattr(TrialConfig, name)) not in allowed:
            return None
    return narrowed


def _make_pair(space: Space, pf: PairFactor, rng: np.random.Generator) -> list[PlannedTrial] | None:
    """Two trials identical but for `pf.field`: a base drawn from the factor's narrowed space, with the
    field at `pf.base` and at one of `pf.others`; None if the base is excluded or over the cap."""
    values = _draw(replace(space, factors=_narrowed(space.fixed, space.factors, pf)), rng)
    if any(values.get(k) in v for k, v in pf.excludes.items()):
        return None
    other = pf.others[int(rng.integers(len(pf.others)))]
    a, b = config_of({**values, pf.field: pf.base}), config_of({**values, pf.field: other})
    if not (within_cap(space, a) and within_cap(space, b)):
        return None
    pid = pair_id_of(a, b)
    return [PlannedTrial(a, pid, pf.field), PlannedTrial(b, pid, pf.field)]


def with_variants(space: Space, values: dict[str, Any]) -> list[PlannedTrial] | None:
    """The twin of `values` (the intervention's baseline applied) and each variant usable with it, all
    labelled twin_id = the twin's trial_id; None if no variant is usable or a config is over the cap."""
    iv = space.intervention
    usable = [v for v in iv.variants
              if not any(values.get(k, getattr(TrialConfig, k)) in ex for k, ex in v.excludes.items())]
    if not usable:
        return None
    twin = config_of({**values, **iv.baseline})
    configs = [twin] + [config_of({**values, **iv.baseline, **v.settings}) for v in usable]
    if not all(within_cap(space, c) for c in configs):
        return None
    return [PlannedTrial(c, twin_id=twin.trial_id, twin_factor=iv.factor) for c in configs]


def validate_choices(space: Space) -> None:
    """Every listed choice of every factor makes a valid config (also those no draw happens to pick)."""
    base = _draw(space, np.random.default_rng(0))
    config_of(base)
    if space.intervention is not None:
        with_variants(space, base)
    for name, choices in space.factors.items():
        # a range (seeds) is checked at its ends: its values differ only in size
        for value in ((choices[0], choices[-1]) if isinstance(choices, range) else choices):
            config_of({**base, name: value})


def sample(preset: Preset, overrides: Overrides, seed: int, n: int) -> Sample:
    """The trials of a sweep, in draw order (see the module docstring for how N counts)."""
    if n < 1:
        raise ConfigError(f"--num-samples must be a positive integer, got {n}")
    space = apply_overrides(preset, overrides)
    validate_choices(space)
    root = _base_seed(preset.name, overrides, seed)
    if preset.grid:  # every combination of the axes, N seeds each
        from sweeps.grid import grid_trials

        trials_, seeds = grid_trials(space, root, n)
        return Sample(trials_, n, seeds < n, sweep_id(preset.name, overrides, seed, n))
    trials: list[PlannedTrial] = []
    seen: set[str] = set()
    found = 0
    for i in range(20 * n + 1000):
        if found == n:
            break
        rng = np.random.default_rng([root, i])
        if space.is_pairs:  # the factors in turn: N/len(pairs) pairs each
            batch = _make_pair(space, space.pairs[found % len(space.pairs)], rng)
        elif space.intervention is not None:
            batch = with_variants(space, _draw(space, rng))
        else:
            cfg = config_of(_draw(space, rng))
            batch = [PlannedTrial(cfg)] if within_cap(space, cfg) else None
        if batch is None or any(t.trial_id in seen for t in batch):
            continue
        trials.extend(batch)
        seen.update(t.trial_id for t in batch)
        found += 1
    return Sample(tuple(trials), n, found < n, sweep_id(preset.name, overrides, seed, n))
