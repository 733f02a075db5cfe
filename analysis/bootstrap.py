"""Vectorized bootstrap replicates of Spearman rho and Kendall tau-b.

`index` is a [B, n] array of resampled row numbers (with replacement); replicate b is the
coefficient of (x[index[b]], y[index[b]]), identical to scipy.stats.spearmanr / kendalltau on that
resample (ties, which resampling creates, are handled the same way: average ranks, tau-b).
"""

from __future__ import annotations

import numpy as np
from scipy import stats

MATRIX_MAX_N = 2000  # above this, Kendall replicates loop over scipy (O(n log n) each) instead of O(n^2)
_CHUNK = 256  # replicates per matrix product (bounds memory to _CHUNK x n)


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
