"""Dziugaite et al. 2020 ("In Search of Robust Measures of Generalization", NeurIPS 2020): the robust sign error
of a complexity measure over environments (docs/science.md, section 6).

An environment is a pair of configurations that differ in exactly one hyperparameter axis i: every other
swept hp.* axis (the seed aside: seeds are the repetitions) takes one value, the "context", and axis i
takes two values v != v'. Its pairs are every (trial a with v, trial b with v') of that context. For a pair,

    sign error  e = (1 - sgn(mu_a - mu_b) sgn(g_a - g_b)) / 2          (0: the measure moves with the gap)
    weight      w = max(0, 1 - 2 exp(-2 n (|g_a - g_b| / 2)^2))^2      (n: the test-set size, hp.n_test)

w is their Monte-Carlo noise weight: by Hoeffding, an accuracy-gap difference |Delta g| measured on n test
points has the observed sign with probability at least 1 - exp(-2 n (|Delta g|/2)^2), and only the excess of
that probability over 1/2 (twice it, squared) is kept, so a difference too small to trust weighs 0. It is a
bound for gaps of accuracies (in [0, 1]); for another target (gap.loss) every weight is 1. The environment's
loss is sum w e / sum w; an environment whose effective sample size (sum w)^2 / sum w^2 is below `min_ess`
(their 12) is dropped. Per axis: the mean of the environment losses and their maximum, the robust (worst
case) statistic; overall: the mean and the maximum over every kept environment.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

import numpy as np
import pandas as pd

from analysis.axes import swept_axes

MIN_ESS = 12.0


def noise_weight(delta_gap: np.ndarray, n_test: np.ndarray) -> np.ndarray:
    """w = max(0, 1 - 2 exp(-2 n (|Delta g| / 2)^2))^2, elementwise."""
    return np.maximum(0.0, 1.0 - 2.0 * np.exp(-2.0 * n_test * (np.abs(delta_gap) / 2.0) ** 2)) ** 2


def environments(df: pd.DataFrame, measure: str, target: str, axes: Iterable[str] | None = None,
                 min_ess: float = MIN_ESS) -> pd.DataFrame:
    """One row per environment: axis, context (the other axes' values), the two values, pairs, weight sum, ess,
    loss (weighted mean sign error) and kept (ess >= min_ess)."""
    mu = pd.to_numeric(df[measure], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    g = pd.to_numeric(df[target], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    finite = np.isfinite(mu) & np.isfinite(g)
    rows, mu, g = df[finite].reset_index(drop=True), mu[finite], g[finite]
    accuracy = "accuracy" in target
    n_test = pd.to_numeric(rows["hp.n_test"], errors="coerce").to_numpy(dtype=float) if accuracy else None
    axes = swept_axes(rows) if axes is None else list(axes)
    found = []
    for axis in axes:
        others = [a for a in axes if a != axis]
        groups = rows.groupby(others, dropna=False, sort=True).indices if others else {(): np.arange(len(rows))}
        for context, members in groups.items():
            values = rows[axis].iloc[members]
            levels = list(dict.fromkeys(values.tolist()))
            for v, w in ((v, w) for i, v in enumerate(levels) for w in levels[i + 1:]):
                a, b = members[(values == v).to_numpy()], members[(values == w).to_numpy()]
                ia, ib = np.repeat(a, len(b)), np.tile(b, len(a))
                error = (1.0 - np.sign(mu[ia] - mu[ib]) * np.sign(g[ia] - g[ib])) / 2.0
                weight = noise_weight(g[ia] - g[ib], np.minimum(n_test[ia], n_test[ib])) if accuracy \
                    else np.ones(len(ia))
                total = float(weight.sum())
                ess = total ** 2 / float((weight ** 2).sum()) if total > 0 else 0.0
                found.append({"axis": axis, "context": context, "values": (v, w), "pairs": len(ia),
                              "weight": total, "ess": ess, "loss": float(weight @ error) / total if total > 0
                              else math.nan, "kept": ess >= min_ess})
    return pd.DataFrame(found, columns=["axis", "context", "values", "pairs", "weight", "ess", "loss", "kept"])


def robust_sign_error(df: pd.DataFrame, measure: str, target: str = "gap.accuracy", axes: Iterable[str] | None = None,
                      min_ess: float = MIN_ESS) -> dict[str, Any]:
    """The module's statistics: {"mean", "max" over every kept environment, "per_axis": {axis: {"mean", "max",
    "environments", "dropped"}}, "environments": kept count, "dropped": count}; NaN where nothing is kept."""
    table = environments(df, measure, target, axes, min_ess)
    kept = table[table["kept"]]
    per_axis = {}
    for axis, group in table.groupby("axis", sort=False):
        good = group[group["kept"]]["loss"]
        per_axis[axis] = {"mean": float(good.mean()) if len(good) else math.nan,
                          "max": float(good.max()) if len(good) else math.nan,
                          "environments": int(len(good)), "dropped": int(len(group) - len(good))}
    return {"mean": float(kept["loss"].mean()) if len(kept) else math.nan,
            "max": float(kept["loss"].max()) if len(kept) else math.nan,
            "per_axis": per_axis, "environments": int(len(kept)), "dropped": int(len(table) - len(kept))}
