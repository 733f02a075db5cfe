"""Which trials a sweep asks for: a seeded, deterministic function of (preset, overrides, seed, N).

Draw i (i = 0, 1, 2, ...) uses its own generator, seeded from sha256(preset, overrides, seed) and i,
so the sample of N is a prefix of the sample of N + 100 (raising N extends a sweep) and a rerun of the
same command asks for exactly the same trials. Draws are deduplicated by trial_id:

- N counts *distinct* trials (for a pairs preset, distinct pairs: 2N trials, no trial in two pairs).
- When the space is small (say `--set` pins all but one factor with 3 choices), draws stop after
  20 N + 1000 attempts and the sweep is the distinct configs found, fewer than N; `Sample.exhausted`
  says so and the CLI prints it.
- Configs above the preset's memory cap (`Preset.max_gib`) are redrawn, so they also count as attempts.

`--set FIELD=VALUE` pins a field (it is no longer drawn, and a linked field stops following its parent);
`--set FIELD=v1,v2,...` draws FIELD from those values instead of the preset's choices.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from study.config import ConfigError, TrialConfig, coerce, parse_assignment
from study.resources import GIB, estimate_bytes
from sweeps.presets import PairFactor, Preset

Overrides = dict[str, tuple]


@dataclass(frozen=True)
class PlannedTrial:
    config: TrialConfig
    pair_id: str | None = None
    pair_factor: str | None = None

    @property
    def trial_id(self) -> str:
        return self.config.trial_id


@dataclass(frozen=True)
class Sample:
    trials: tuple[PlannedTrial, ...]
    requested: int  # N
    exhausted: bool  # fewer than N distinct trials (pairs) exist or were found within the draw limit
    sweep_id: str  # sha256 of (preset, overrides, seed, N), 12 hex digits


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


def apply_overrides(preset: Preset, overrides: Overrides) -> Space:
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
            pairs.append(PairFactor(pf.field, pf.base, others, pf.excludes))
    if preset.pairs and not pairs:
        raise ConfigError(f"--set pins every paired factor of preset {preset.name} "
                          f"({', '.join(pf.field for pf in preset.pairs)}); leave at least one free")
    return Space(fixed, factors, linked, tuple(pairs), bool(preset.pairs), preset.max_gib)


def _base_seed(preset: str, overrides: Overrides, seed: int) -> int:
    payload = json.dumps({"preset": preset, "overrides": {k: list(v) for k, v in sorted(overrides.items())},
                          "seed": seed}, sort_keys=True)
    return int.from_bytes(hashlib.sha256(payload.encode()).digest()[:8], "little")


def sweep_id(preset: str, overrides: Overrides, seed: int, n: int) -> str:
    payload = json.dumps({"preset": preset, "overrides": {k: list(v) for k, v in sorted(overrides.items())},
                          "seed": seed, "n": n}, sort_keys=True)
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


def _config(values: dict[str, Any]) -> TrialConfig:
    return TrialConfig(**{k: (v.item() if isinstance(v, np.generic) else v) for k, v in values.items()})


def _fits(space: Space, cfg: TrialConfig) -> bool:
    return space.max_gib is None or estimate_bytes(cfg) <= space.max_gib * GIB


def pair_id_of(a: TrialConfig, b: TrialConfig) -> str:
    return hashlib.sha256("|".join(sorted((a.trial_id, b.trial_id))).encode()).hexdigest()[:16]


def _make_pair(space: Space, values: dict[str, Any], rng: np.random.Generator) -> list[PlannedTrial] | None:
    usable = [pf for pf in space.pairs if not any(values.get(k) in v for k, v in pf.excludes.items())]
    if not usable:
        return None
    pf = usable[int(rng.integers(len(usable)))]
    other = pf.others[int(rng.integers(len(pf.others)))]
    a, b = _config({**values, pf.field: pf.base}), _config({**values, pf.field: other})
    if not (_fits(space, a) and _fits(space, b)):
        return None
    pid = pair_id_of(a, b)
    return [PlannedTrial(a, pid, pf.field), PlannedTrial(b, pid, pf.field)]


def validate_choices(space: Space) -> None:
    """Every listed choice of every factor makes a valid config (also those no draw happens to pick)."""
    base = _draw(space, np.random.default_rng(0))
    _config(base)
    for name, choices in space.factors.items():
        # a range (seeds) is checked at its ends: its values differ only in size
        for value in ((choices[0], choices[-1]) if isinstance(choices, range) else choices):
            _config({**base, name: value})


def sample(preset: Preset, overrides: Overrides, seed: int, n: int) -> Sample:
    """The trials of a sweep, in draw order (see the module docstring for how N counts)."""
    if n < 1:
        raise ConfigError(f"--num-samples must be a positive integer, got {n}")
    space = apply_overrides(preset, overrides)
    validate_choices(space)
    root = _base_seed(preset.name, overrides, seed)
    trials: list[PlannedTrial] = []
    seen: set[str] = set()
    found = 0
    for i in range(20 * n + 1000):
        if found == n:
            break
        rng = np.random.default_rng([root, i])
        values = _draw(space, rng)
        if space.is_pairs:
            batch = _make_pair(space, values, rng)
        else:
            cfg = _config(values)
            batch = [PlannedTrial(cfg)] if _fits(space, cfg) else None
        if batch is None or any(t.trial_id in seen for t in batch):
            continue
        trials.extend(batch)
        seen.update(t.trial_id for t in batch)
        found += 1
    return Sample(tuple(trials), n, found < n, sweep_id(preset.name, overrides, seed, n))
