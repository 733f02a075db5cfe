"""How a finding's number becomes a verdict (holds, does not hold, inconclusive, no data): the rule as the
report prints it (VERDICT_RULE), `verdict` that applies it, and the exact binomial interval of a fraction."""

from __future__ import annotations

import numpy as np
from scipy import stats as sps

MIN_N = 10  # a correlation over fewer nets is inconclusive
NULL_MARGIN = 0.5  # "no correlation" holds only if the CI also rules out |rho| >= this
LEVEL = 0.95

VERDICT_RULE = (
    f"n counts nets (pairs for a paired factor); every interval is a {LEVEL:.0%} CI. 'no data' if n = 0. "
    f"Correlation claims (Spearman rho, percentile bootstrap over nets): 'inconclusive' if n < {MIN_N} or "
    "there is no CI; a predicted sign 'holds' if the whole CI lies on that side of 0, 'does not hold' if it "
    "lies wholly at or beyond 0 on the other side, else 'inconclusive' (it contains 0); a predicted absence "
    "of correlation 'does not "
    f"hold' if the CI excludes 0, 'holds' if it contains 0 and lies inside (-{NULL_MARGIN}, +{NULL_MARGIN}), "
    "else 'inconclusive'. Fraction claims (the share of pairs, nets or points that behave as the paper "
    "found; exact Clopper-Pearson CI for counts, bootstrap over nets for h_band): 'holds' if lo > 0.5, "
    "'does not hold' if hi < 0.5, else 'inconclusive' (no minimum n: the exact CI is wide when n is small).")


def verdict(kind: str, value: float, lo: float, hi: float, n: int) -> tuple[str, str]:
    """(verdict, why) by VERDICT_RULE; kind: 'positive', 'negative', 'null' (correlations) or 'fraction'."""
    if not n:
        return "no data", "n = 0"
    has_ci = lo is not None and hi is not None and np.isfinite(lo) and np.isfinite(hi)
    if kind == "fraction":
        if not has_ci:
            return "inconclusive", "no CI"
        return ("holds", "") if lo > 0.5 else ("does not hold", "") if hi < 0.5 else \
            ("inconclusive", "the CI contains 0.5")
    if n < MIN_N:
        return "inconclusive", f"n < {MIN_N}"
    if not has_ci:
        return "inconclusive", "no CI (too few distinct values)"
    if kind == "null":
        if lo > 0 or hi < 0:
            return "does not hold", ""
        inside = -NULL_MARGIN < lo and hi < NULL_MARGIN
        return ("holds", "") if inside else ("inconclusive", f"the CI reaches |rho| >= {NULL_MARGIN}")
    sign = {"positive": 1.0, "negative": -1.0}[kind]
    if min(sign * lo, sign * hi) > 0:
        return "holds", ""
    if max(sign * lo, sign * hi) <= 0:
        return "does not hold", ""
    return "inconclusive", "the CI contains 0"


def binomial_ci(k: int, n: int, level: float = LEVEL) -> tuple[float, float]:
    """Exact Clopper-Pearson interval of a proportion k/n (scipy.stats.binomtest); NaN bounds for n = 0."""
    if n < 1:
        return float("nan"), float("nan")
    ci = sps.binomtest(int(k), int(n)).proportion_ci(level)
    return float(ci.low), float(ci.high)
