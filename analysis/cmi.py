"""Jiang et al. 2020 ("Fantastic Generalization Measures and Where to Find Them", ICLR 2020, Sec. 4): the
conditional-mutual-information score of a complexity measure (docs/science.md, section 6).

Over the ordered pairs (a, b) of distinct trials, V_mu = sgn(mu_a - mu_b), V_g = sgn(g_a - g_b) and, for a set
S of hyperparameter axes, U_S = (the values of S in trial a, those in trial b). With the pairs' empirical
distribution,

    score(S) = I(V_mu; V_g | U_S) / H(V_g | U_S),
    I(V_mu; V_g | U) = sum_u p(u) sum_{v,w} p(v,w | u) log(p(v,w | u) / (p(v | u) p(w | u))),
    H(V_g | U)      = -sum_u p(u) sum_w p(w | u) log p(w | u),

weighted by p(u) as in their definition (the PGDL scoring code averages the cells uniformly, which on a
full grid with equal cells is the same). K(mu) = min over |S| <= max_conditioning of score(S), the
empty set included: a measure that only copies a hyperparameter driving the gap scores high
unconditioned and near 0 once that axis is conditioned on, so its K is near 0. A tie (equal values) is
a sign of its own, 0. A set S where H(V_g | U_S) = 0 (the gap's direction known from U_S alone) has no
score and is skipped.
"""

from __future__ import annotations

import itertools
from typing import Any, Iterable

import numpy as np
import pandas as pd

from analysis.axes import swept_axes


def _entropy(counts: np.ndarray) -> np.ndarray:
    """Shannon entropy (nats) of each row of a count table [cells, outcomes]."""
    totals = counts.sum(axis=1, keepdims=True)
    p = np.divide(counts, totals, out=np.zeros_like(counts, dtype=float), where=totals > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.where(p > 0, p * np.log(p), 0.0).sum(axis=1)


def _score(cells: np.ndarray, v_mu: np.ndarray, v_g: np.ndarray) -> tuple[float, float]:
    """(I(V_mu; V_g | U), H(V_g | U)) in nats, U given as one integer code a pair (`cells`), V in {0, 1, 2}."""
    _, cell = np.unique(cells, return_inverse=True)
    joint = np.zeros((cell.max() + 1, 9))
    np.add.at(joint, (cell, 3 * v_mu + v_g), 1.0)
    weight = joint.sum(axis=1) / joint.sum()
    h_g = _entropy(joint.reshape(-1, 3, 3).sum(axis=1))
    h_mu = _entropy(joint.reshape(-1, 3, 3).sum(axis=2))
    mutual = h_mu + h_g - _entropy(joint)  # I = H(V_mu|u) + H(V_g|u) - H(V_mu, V_g|u), per cell
    return float(weight @ np.maximum(mutual, 0.0)), float(weight @ h_g)


def cmi_score(df: pd.DataFrame, measure: str, target: str = "gap.accuracy", axes: Iterable[str] | None = None,
              max_conditioning: int = 2) -> dict[str, Any]:
    """Jiang et al.'s CMI score of `measure` for `target` (the module's formula) over the rows of `df` where
    both are finite. axes: the hp.* columns to condition on (default: analysis.axes.swept_axes(df)).

    Returns {"k": min score, "argmin": the conditioning set reaching it (a tuple of axes), "scores":
    {set: score}, "n": trials, "pairs": ordered pairs}; k is NaN with fewer than 2 trials or no set scored."""
    x = pd.to_numeric(df[measure], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    y = pd.to_numeric(df[target], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    finite = np.isfinite(x) & np.isfinite(y)
    rows, x, y = df[finite], x[finite], y[finite]
    axes = list(swept_axes(rows) if axes is None else axes)
    out: dict[str, Any] = {"k": float("nan"), "argmin": None, "scores": {}, "n": len(rows), "pairs": 0}
    if len(rows) < 2:
        return out
    a, b = np.nonzero(~np.eye(len(rows), dtype=bool))  # every ordered pair of distinct trials
    v_mu, v_g = np.sign(x[a] - x[b]).astype(int) + 1, np.sign(y[a] - y[b]).astype(int) + 1
    codes = {axis: np.asarray(rows[axis].factorize(use_na_sentinel=False)[0], dtype=np.int64) for axis in axes}
    out["pairs"] = len(a)
    for size in range(0, max(0, int(max_conditioning)) + 1):
        for subset in itertools.combinations(axes, size):
            cells = np.zeros(len(a), dtype=np.int64)
            for axis in subset:  # the pair's values of the axis, a's then b's, folded into one code
                levels = int(codes[axis].max()) + 1
                cells = (cells * levels + codes[axis][a]) * levels + codes[axis][b]
            mutual, entropy = _score(cells, v_mu, v_g)
            if entropy > 1e-12:
                out["scores"][subset] = mutual / entropy
    if out["scores"]:
        out["argmin"] = min(out["scores"], key=out["scores"].get)
        out["k"] = out["scores"][out["argmin"]]
    return out
