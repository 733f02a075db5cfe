"""The trials of a grid preset: every combination of its axes, each with the same N seeds.

Jiang et al. 2020 ("Fantastic Generalization Measures and Where to Find Them") judge a measure on a grid
of hyperparameters so that trials differ in exactly one axis: the granulated Kendall coefficient Psi
(analysis.stats.granulated_kendall), the CMI score (analysis.stats.cmi) and Dziugaite et al.'s robust
sign error (analysis.robust_sign) are defined on such groups. The axes are the preset's factors other than
`seed` (after `--set`: `--set AXIS=v1,v2` narrows an axis, `--set AXIS=v` pins it); a linked field (the
learning rate of each optimizer) takes each of its values for its parent's value, as one more axis of the
grid. The N seeds are the first N of a permutation of the preset's seed range, drawn by a generator seeded from
(preset, --set, --seed), so every grid point has the same seeds, a rerun asks for the same trials, and a
larger N keeps the trials of a smaller one;
`--set seed=S` pins a single seed. Configs above the preset's memory cap are left out.
"""

from __future__ import annotations

import itertools

import numpy as np

from sweeps.sampling import PlannedTrial, Space, config_of, within_cap


def grid_seeds(space: Space, root: int, n: int) -> list[int]:
    """The N seeds every grid point runs with (all of them, if the range holds fewer)."""
    if "seed" not in space.factors:
        return [space.fixed.get("seed", 0)]
    choices = space.factors["seed"]
    order = np.random.default_rng(root).permutation(len(choices))  # a prefix: raising N extends the sweep
    return sorted(int(choices[int(i)]) for i in order[:n])


def grid_points(space: Space) -> list[dict]:
    """The values of every combination of the axes (and of each linked field's values), fixed fields included."""
    axes = sorted(k for k in space.factors if k != "seed")
    linked = sorted(space.linked)
    points = []
    for combo in itertools.product(*(space.factors[a] for a in axes)):
        values = {**space.fixed, **dict(zip(axes, combo))}
        options = [space.linked[name][1][values[space.linked[name][0]]] for name in linked]
        for chosen in itertools.product(*options):
            points.append({**values, **dict(zip(linked, chosen))})
    return points


def grid_trials(space: Space, root: int, n: int) -> tuple[tuple[PlannedTrial, ...], int]:
    """(the trials: grid point by grid point, seeds in order; how many seeds each point got)."""
    seeds = grid_seeds(space, root, n)
    trials = []
    for values in grid_points(space):
        for seed in seeds:
            cfg = config_of({**values, "seed": seed})
            if within_cap(space, cfg):
                trials.append(PlannedTrial(cfg))
    return tuple(trials), len(seeds)
