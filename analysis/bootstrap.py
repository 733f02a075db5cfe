"""Percentile-bootstrap confidence intervals, and vectorized replicates of Spearman rho and Kendall tau-b.

`percentile_bootstrap` is the one bootstrap of the analysis (the rank-correlation CIs of
analysis.stats and, through `bootstrap_statistic`, the effect CIs of analysis.intervention use it):
it draws the resamples (`resample_index`), takes the percentiles of the finite replicates and says
how many were finite; with fewer than MIN_FINITE_FRACTION (half) of them finite it gives no interval.

In the replicate functions, `index` is a [B, n] array of resampled row numbers (with replacement);
replicate b is the coefficient of (x[index[b]], y[index[b]]), identical to scipy.stats.spearmanr /
kendalltau on that resample (ties, which resampling creates, are handled the same way: average
ranks, tau-b).
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

import numpy as np
from scipy import stats

MIN_FINITE_FRACTION = 0.5  # fewer finite replicates than this fraction of n_boot: no interval (NaN bounds)
MATRIX_MAX_N = 2000  # above this, Kendall replicates loop over scipy (O(n log n) each) instead of O(n^2)
_CHUNK = 256  # replicates per matrix product (bounds memory to _CHUNK x n)


class BootstrapCI(NamedTuple):
    """A point estimate and its percentile-bootstrap interval [lo, hi], which rests on `n_finite` of the
    `n_boot` resamples asked for (0 when none was drawn: too few values, or n_boot = 0)."""
    estimate: float
    lo: float
    hi: float
    n_finite: int
    n_boot: int


def resample_index(n: int, n_boot: int, seed: int) -> np.ndarray:
    """[n_boot, n] row numbers drawn with replacement, in one call of a numpy Generator seeded by `seed`."""
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


def percentile_bootstrap(replicates: Callable[[np.ndarray], np.ndarray], n: int, estimate: float = math.nan,
                         n_boot: int = 1000, seed: int = 0, level: float = 0.95,
                         min_finite: float = MIN_FINITE_FRACTION) -> BootstrapCI:
    """Percentile-bootstrap CI of a statistic of n rows; same arguments and seed, same numbers.

    `replicates(index)` gets the [n_boot, n] resampled row numbers of `resample_index(n, n_boot, seed)`
    and returns the statistic of each resample, [n_boot] (vectorized: x[index] is every resample at
    once). lo and hi are the (1-level)/2 and (1+level)/2 percentiles (numpy's linear interpolation)
    of the finite replicates; NaN or infinite ones (a resample of one repeated point has no rank
    correlation) are left out and counted: the result's n_finite. When fewer than `min_finite` x
    n_boot replicates are finite (default MIN_FINITE_FRACTION: at least half), lo and hi are NaN,
    since an interval from the few resamples where the statistic exists would claim too much.
    `estimate` (the statistic of the data itself, computed by the caller) is passed through.
    With n < 1 or n_boot < 1 nothing is drawn: NaN bounds, n_finite 0."""
    if n < 1 or n_boot < 1:
        return BootstrapCI(float(estimate), math.nan, math.nan, 0, max(int(n_boot), 0))
    values = np.asarray(replicates(resample_index(n, n_boot, seed)), dtype=float)
    finite = values[np.isfinite(values)]
    lo = hi = math.nan
    if len(finite) and len(finite) >= min_finite * n_boot:
        lo, hi = (float(q) for q in np.percentile(finite, [100 * (1 - level) / 2, 100 * (1 + level) / 2]))
    return BootstrapCI(float(estimate), lo, hi, int(len(finite)), int(n_boot))


def bootstrap_statistic(values: np.ndarray, statistic: Callable[..., np.ndarray], n_boot: int = 1000,
                        seed: int = 0, level: float = 0.95, min_n: int = 3) -> BootstrapCI:
    """`statistic` of the finite values of a sample, and its `percentile_bootstrap` CI.

    NaN and infinite values are left out first; the n left are resampled and `statistic(v, axis=1)`
    reduces each row of the [n_boot, n] resamples at once (numpy's mean, median). With fewer than
    `min_n` values lo and hi are NaN (no resampling: a CI from one or two values would claim too
    much); with none, the estimate is NaN too."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    estimate = float(statistic(values)) if len(values) else math.nan
    n = len(values) if len(values) >= max(min_n, 1) else 0  # 0: no resampling
    return percentile_bootstrap(lambda index: statistic(values[index], axis=1), n, estimate, n_boot, seed, level)


def bootstrap_spearman(x: np.ndarray, y: np.ndarray, index: np.ndarray) -> np.ndarray:
    """rho_b = Pearson correlation of the average ranks of x[index[b]] and y[index[b]], [B]."""
    rx = stats.rankdata(x[index], axis=1)
    ry = stats.rankdata(y[index], axis=1)
    rx -= rx.mean(axis=1, keepdims=True)
    ry -= ry.mean(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (rx * ry).sum(1) / np.sqrt((rx * rx).sum(1) * (ry * ry).sum(1))


def bootstrap_kendall(x: np.ndarray, y: np.ndarray, index: np.ndarray) -> np.ndarray:
    """tau_b of every resample, [B].

    A resample is the original points with multiplicities w (w_i = times row i was drawn,
    sum w = n). Over the original pairs i != j, with S_ij = sign(x_i - x_j) sign(y_i - y_j) and
    Tx_ij = [x_i = x_j], Ty_ij = [y_i = y_j]:
        C - D = w^T S w / 2,
        n1 = sum_i w_i (w_i - 1) / 2 + w^T Tx w / 2   (pairs tied in x; copies of a point tie),
        n2 likewise with Ty,   n0 = n (n - 1) / 2,
        tau_b = (C - D) / sqrt((n0 - n1)(n0 - n2)).
    This costs O(B n^2) as matrix products; for n > MATRIX_MAX_N it loops over scipy instead.
    """
    n_boot, n = index.shape
    if n > MATRIX_MAX_N:
        return np.array([stats.kendalltau(x[row], y[row]).statistic for row in index])
    s = np.sign(x[:, None] - x[None, :]) * np.sign(y[:, None] - y[None, :])
    tx = (x[:, None] == x[None, :]).astype(float)
    ty = (y[:, None] == y[None, :]).astype(float)
    np.fill_diagonal(tx, 0.0)
    np.fill_diagonal(ty, 0.0)
    n0 = n * (n - 1) / 2
    out = np.empty(n_boot)
    for start in range(0, n_boot, _CHUNK):
        rows = index[start:start + _CHUNK]
        w = np.zeros((len(rows), n))
        np.add.at(w, (np.arange(len(rows))[:, None], rows), 1.0)
        self_ties = (w * (w - 1)).sum(1) / 2
        quad = lambda m: ((w @ m) * w).sum(1) / 2  # noqa: E731  (w^T M w / 2, per replicate)
        n1, n2 = self_ties + quad(tx), self_ties + quad(ty)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[start:start + len(rows)] = quad(s) / np.sqrt((n0 - n1) * (n0 - n2))
    return out
