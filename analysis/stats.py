"""How well does a complexity measure predict the generalization gap? (docs/science.md, section 5)

Three views, each computed on the trials table (one row per trial, `hp.*` and `measure.*` columns):

- `rank_correlations`: Spearman rho and Kendall tau between measure and gap over all trials, with
  percentile-bootstrap 95% confidence intervals.
- `granulated_kendall`: Jiang et al. 2020, "Fantastic Generalization Measures and Where to Find
  Them" (ICLR 2020), Sec. 4: per hyperparameter axis, the mean tau over groups of trials in which
  only that axis varies; Psi is the mean over axes.
- `cmi`: Jiang et al. 2020's conditional mutual information K (formula and tests: analysis/cmi.py).
- `sign_error`: Dziugaite et al. 2020, "In Search of Robust Measures of Generalization"
  (NeurIPS 2020): over coupled pairs of trials that differ in one factor, how often the measure
  moves the other way than the gap; per factor ("environment") and the worst case over factors.

`measure_table` gathers all three for every measure and data set, against both gap targets (gap.accuracy,
gap.loss) and per label stratum (all nets, true-label nets, random-label nets; see analysis.strata), for
the report.
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np
import pandas as pd
from scipy import stats

from analysis.axes import SEED_AXIS, groups_of, level_codes, linked_classes
from analysis.bootstrap import bootstrap_kendall, bootstrap_spearman, percentile_bootstrap
from analysis.cmi import cmi_score
from analysis.strata import LABELS, TARGETS, label_strata

BOOT_COUNTS = ("spearman_n_boot_finite", "kendall_n_boot_finite", "n_boot")  # measure_table's last columns


def _finite_pairs(df: pd.DataFrame, measure: str, target: str) -> tuple[np.ndarray, np.ndarray]:
    """The (measure, target) values of the rows where both are finite, as float64 arrays."""
    x = pd.to_numeric(df[measure], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    y = pd.to_numeric(df[target], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    ok = np.isfinite(x) & np.isfinite(y)
    return x[ok], y[ok]


def rank_correlations(df: pd.DataFrame, measure: str, target: str = "gap.loss", n_boot: int = 1000,
                      seed: int = 0, level: float = 0.95) -> dict[str, float]:
    """Spearman rho and Kendall tau-b of `measure` against `target`, with bootstrap CIs.

    rho = Pearson correlation of the ranks (average ranks for ties);
    tau_b = (C - D) / sqrt((n0 - n1)(n0 - n2)) with C, D the concordant and discordant pairs,
    n0 = n(n-1)/2 and n1, n2 the pairs tied in measure, in target (scipy.stats.kendalltau).
    CI: percentile bootstrap (`analysis.bootstrap.percentile_bootstrap`): resample the n trials
    with replacement `n_boot` times (numpy Generator seeded by `seed`; the same resamples for both
    coefficients), recompute both coefficients, take the (1-level)/2 and (1+level)/2 quantiles of
    the finite replicates (a resample of one repeated point has no coefficient).
    `<name>_n_boot_finite` counts them (0 when no bootstrap ran); with fewer than
    MIN_FINITE_FRACTION (half) of `n_boot` finite, the bounds are NaN. Rows where either value is
    missing or infinite are left out.

    Returns n, spearman, spearman_p, spearman_lo, spearman_hi, kendall, kendall_p, kendall_lo,
    kendall_hi, spearman_n_boot_finite, kendall_n_boot_finite, n_boot (the resamples asked for).
    """
    x, y = _finite_pairs(df, measure, target)
    out: dict[str, float] = {"n": float(len(x))}
    keys = ("spearman", "spearman_p", "spearman_lo", "spearman_hi", "kendall", "kendall_p", "kendall_lo", "kendall_hi")
    out.update({k: float("nan") for k in keys})
    out.update(spearman_n_boot_finite=0, kendall_n_boot_finite=0, n_boot=max(int(n_boot), 0))
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return out
    rho = stats.spearmanr(x, y)
    tau = stats.kendalltau(x, y)
    out.update(spearman=float(rho.statistic), spearman_p=float(rho.pvalue),
               kendall=float(tau.statistic), kendall_p=float(tau.pvalue))
    for name, replicates in (("spearman", bootstrap_spearman), ("kendall", bootstrap_kendall)):
        ci = percentile_bootstrap(lambda index: replicates(x, y, index), len(x), out[name], n_boot=n_boot,
                                  seed=seed, level=level)
        out[f"{name}_lo"], out[f"{name}_hi"], out[f"{name}_n_boot_finite"] = ci.lo, ci.hi, ci.n_finite
    return out


def cmi(df: pd.DataFrame, measure: str, target: str = "gap.accuracy", axes: Iterable[str] | None = None,
        max_conditioning: int = 2) -> dict[str, Any]:
    """K = min over |S| <= max_conditioning of I(V_mu; V_g | U_S) / H(V_g | U_S) over pairs of trials (Jiang
    et al. 2020; analysis.cmi.cmi_score). Returns {"k", "argmin", "scores", "n", "pairs"}."""
    return cmi_score(df, measure, target, axes, max_conditioning)


def granulated_kendall(df: pd.DataFrame, measure: str, target: str = "gap.loss",
                       axes: Iterable[str] | None = None) -> dict[str, Any]:
    """Jiang et al. 2020 granulated Kendall coefficient (their Eq. 4-5).

    For axis i, the trials are grouped by the values of every other swept `hp.*` column (so that
    within a group only axis i varies); with tau_g the Kendall tau-b between measure and target
    in group g,
        psi_i = (1/m_i) sum_g tau_g   over the m_i groups with >= 2 trials and a defined tau,
        Psi   = (1/|A|) sum_{i in A} psi_i   over the axes A with at least one such group.
    Groups where tau is undefined (measure or target constant in the group) are left out and
    counted. `axes` defaults to `swept_axes(df)` (all varying hp.* columns except hp.seed, columns that
    determine each other one-to-one being one axis: analysis.axes); the grouping always uses every varying
    hp.* column but those of axis i's class, including ones not listed in `axes`. Only rows
    where both values are finite enter (the swept axes are those of these rows). The groups are
    found on integer codes of the hp.* values (numpy), not by a pandas groupby per axis.

    Returns {"Psi", "psi": {axis: psi_i}, "groups": {axis: m_i}, "undefined": {axis: count}, "axes"}.
    """
    x_all = pd.to_numeric(df[measure], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    y_all = pd.to_numeric(df[target], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    ok = np.isfinite(x_all) & np.isfinite(y_all)
    x, y = x_all[ok], y_all[ok]
    hp = [c for c in df.columns if c.startswith("hp.")]
    axes = None if axes is None else list(axes)
    codes = {c: level_codes(df[c])[ok] for c in dict.fromkeys([*hp, *(axes or [])])}
    varying = [c for c in hp if len(codes[c]) and codes[c].min() < codes[c].max()]  # of the kept rows, seed too
    classes = linked_classes({c: codes[c] for c in varying if c != SEED_AXIS})
    member_of = {c: cls for cls in classes.values() for c in cls}
    axes = list(classes) if axes is None else axes
    psi: dict[str, float] = {}
    groups: dict[str, int] = {}
    undefined: dict[str, int] = {}
    for axis in axes:
        taus, n_undefined = [], 0
        linked = member_of.get(axis, [axis])
        for rows in groups_of([codes[c] for c in varying if c not in linked], len(x)):
            if len(rows) < 2 or np.unique(codes[axis][rows]).size < 2:
                continue
            gx, gy = x[rows], y[rows]
            tau = stats.kendalltau(gx, gy).statistic if np.ptp(gx) > 0 and np.ptp(gy) > 0 else np.nan
            if np.isfinite(tau):
                taus.append(float(tau))
            else:
                n_undefined += 1
        groups[axis], undefined[axis] = len(taus), n_undefined
        psi[axis] = float(np.mean(taus)) if taus else float("nan")
    defined = [v for v in psi.values() if np.isfinite(v)]
    return {"Psi": float(np.mean(defined)) if defined else float("nan"), "psi": psi, "groups": groups,
            "undefined": undefined, "axes": list(axes)}


def coupled_pairs(df: pd.DataFrame) -> tuple[list[tuple[str, pd.DataFrame]], int]:
    """The coupled pairs of a trials frame as (factor, its two rows), and how many pair ids were ambiguous.

    Two kinds: the two trials that share a `pair_id` (the pairs preset; factor = `pair.factor`), and every
    treated trial of an intervention group with its untreated twin (the trial whose trial_id is their
    `twin_id`; factor = "<twin.factor>=<the treated trial's value of it>", e.g. "regularizer=jacobian").
    A pair id shared by more than two trials is left out and counted as ambiguous."""
    pairs: list[tuple[str, pd.DataFrame]] = []
    ambiguous = 0
    if "pair_id" in df and df["pair_id"].notna().any():
        paired = df[df["pair_id"].notna()]
        factors = paired["pair.factor"] if "pair.factor" in paired else pd.Series("?", index=paired.index)
        for _, rows in paired.groupby("pair_id", sort=True):
            if len(rows) > 2:
                ambiguous += 1
                continue
            names = factors.loc[rows.index].dropna()
            pairs.append((str(names.iloc[0]) if len(names) else "?", rows))
    if "twin_id" in df and df["twin_id"].notna().any():
        by_id = df.drop_duplicates("trial_id", keep="last").set_index("trial_id", drop=False)
        treated = df[df["twin_id"].notna() & (df["twin_id"] != df["trial_id"])]
        for index, row in treated.sort_values("trial_id").iterrows():
            if row["twin_id"] not in by_id.index:
                pairs.append(("?", treated.loc[[index]]))  # no twin: counted as incomplete
                continue
            factor = str(row.get("twin.factor") or "?")
            value = row.get(f"hp.{factor}")
            label = factor if value is None or (isinstance(value, float) and np.isnan(value)) else f"{factor}={value}"
            pairs.append((label, pd.concat([by_id.loc[[row["twin_id"]]], treated.loc[[index]]])))
    return pairs, ambiguous


def sign_error(df: pd.DataFrame, measure: str, target: str = "gap.loss",
               min_target_diff: float = 0.0) -> dict[str, Any]:
    """Dziugaite et al. 2020 sign-error over coupled pairs (`coupled_pairs`), per factor and worst case.

    For a pair with differences dm (measure) and dg (target),
        err = (1 - sign(dm) sign(dg)) / 2   in {0, 1/2, 1}
    (1: the measure moves against the gap; a tie in one of them counts 1/2; the order of the two
    trials does not matter). Reported: the mean err over all pairs ("overall"), per factor, and
    the worst factor (the max over environments, their robust view). Pairs with |dg| <=
    `min_target_diff` are left out as noise (default 0: none). Pairs with a missing member, or a
    missing or non-finite value, are left out and counted as "incomplete"; pair ids shared by more
    than two trials are left out and counted as "ambiguous".
    """
    result: dict[str, Any] = {"overall": float("nan"), "n_pairs": 0, "per_factor": {}, "worst": float("nan"),
                              "worst_factor": None, "incomplete": 0, "ambiguous": 0, "below_min_diff": 0}
    pairs, result["ambiguous"] = coupled_pairs(df)
    errors: dict[str, list[float]] = {}
    for factor, rows in pairs:
        x, y = _finite_pairs(rows, measure, target)
        if len(x) < 2:
            result["incomplete"] += 1
            continue
        dm, dg = x[1] - x[0], y[1] - y[0]
        if abs(dg) <= min_target_diff and min_target_diff > 0:
            result["below_min_diff"] += 1
            continue
        errors.setdefault(factor, []).append((1.0 - np.sign(dm) * np.sign(dg)) / 2.0)
    if not errors:
        return result
    per_factor = {f: {"error": float(np.mean(e)), "n": len(e)} for f, e in sorted(errors.items())}
    worst = max(per_factor, key=lambda f: per_factor[f]["error"])
    pooled = [e for values in errors.values() for e in values]
    result.update(overall=float(np.mean(pooled)), n_pairs=len(pooled), per_factor=per_factor,
                  worst=per_factor[worst]["error"], worst_factor=worst)
    return result


def default_measures(df: pd.DataFrame) -> list[str]:
    """Every `measure.*` column of `df` with at least two distinct finite values."""
    out = []
    for column in df.columns:
        if column.startswith("measure."):
            values = pd.to_numeric(df[column], errors="coerce")
            if values[np.isfinite(values)].nunique() > 1:
                out.append(column)
    return out


SCORE_COLUMNS = ("n", "spearman", "spearman_lo", "spearman_hi", "kendall", "kendall_lo", "kendall_hi", "psi",
                 "sign_error", "sign_error_worst", "worst_factor", "n_pairs")
PAIR_COLUMNS = ("trial_id", "pair_id", "pair.factor", "twin_id", "twin.factor")  # what sign_error reads


def _scores(frame: pd.DataFrame, measure: str, target: str, n_boot: int, seed: int) -> dict[str, Any]:
    """SCORE_COLUMNS and BOOT_COUNTS of one measure against one target on the rows of `frame`."""
    corr = rank_correlations(frame, measure, target, n_boot=n_boot, seed=seed)
    signs = sign_error(frame, measure, target)
    return {"n": int(corr["n"]), **{k: corr[k] for k in SCORE_COLUMNS[1:7]},
            "psi": granulated_kendall(frame, measure, target)["Psi"], "sign_error": signs["overall"],
            "sign_error_worst": signs["worst"], "worst_factor": signs["worst_factor"], "n_pairs": signs["n_pairs"],
            **{k: corr[k] for k in BOOT_COUNTS}}


def measure_table(df: pd.DataFrame, measures: Iterable[str] | None = None, targets: Iterable[str] | str | None = None,
                  by: str | None = "hp.dataset", n_boot: int = 1000, seed: int = 0,
                  labels: Iterable[str] = LABELS, *, target: str | None = None) -> pd.DataFrame:
    """One row per (`by` value, target, labels, measure): every score of the measure against the target,
    on the nets of that label stratum (analysis.strata: "all", "true" = hp.random_labels 0, "random" > 0).

    Columns: <by>, target, labels, measure, n, spearman, spearman_lo, spearman_hi, kendall, kendall_lo,
    kendall_hi, psi (granulated Kendall Psi), sign_error, sign_error_worst, worst_factor, n_pairs, rank,
    then BOOT_COUNTS: spearman_n_boot_finite, kendall_n_boot_finite (the finite bootstrap replicates each
    CI rests on, see `rank_correlations`) and n_boot (the resamples asked for).
    `targets` defaults to TARGETS (gap.accuracy, gap.loss); a target column absent from `df` is left
    out. `target=` (one column) is the former single-target call, the same as targets=(target,).
    Every stratum gets its rows, an empty or tiny one too: n says how many nets had both values, and
    with n < 3 (or no variation) the coefficients are NaN. Sign-errors count only the coupled pairs
    whose two nets are both in the stratum (a random_labels pair has one net in each of true, random).
    Sorted by `by`, then target and labels in the order given, then by Kendall tau, largest first
    (`rank` within (<by>, target, labels): 1 = the measure that best tracks the gap, in the sense that
    a complexity measure should grow with the gap: a measure that shrinks as the gap grows, such as the
    margin, scores a negative tau and ranks last). Measures default to `default_measures(df)`, the
    same list for every stratum. `by=None` (or a column absent from df) pools all trials under the
    value "all" in a column named "group".
    """
    if target is not None and targets is not None:
        raise ValueError("measure_table: pass targets= or target=, not both")
    targets = [target] if target is not None else [targets] if isinstance(targets, str) else \
        list(TARGETS if targets is None else targets)
    targets = [t for t in targets if t in df.columns]
    measures = default_measures(df) if measures is None else list(measures)
    labels = list(labels)
    key = by if by is not None and by in df.columns else "group"
    keep = [c for c in df.columns if c.startswith("hp.") or c in {*PAIR_COLUMNS, *measures, *targets, key}]
    slim = df[keep]  # the columns the scores read: slicing a wide table per stratum and group costs
    groups = slim.groupby(by, sort=True) if key == by else [("all", slim)]
    rows = []
    for value, group in groups:
        for stratum, subset in label_strata(group, labels):
            for target_column in targets:
                for measure in measures:
                    rows.append({key: value, "target": target_column, "labels": stratum, "measure": measure,
                                 **_scores(subset, measure, target_column, n_boot, seed)})
    columns = [key, "target", "labels", "measure", *SCORE_COLUMNS]
    table = pd.DataFrame(rows, columns=[*columns, *BOOT_COUNTS])
    order = [key, "_target", "_labels", "kendall"]
    table = (table.assign(_target=table["target"].map({t: i for i, t in enumerate(targets)}),
                          _labels=table["labels"].map({s: i for i, s in enumerate(labels)}))
             .sort_values(order, ascending=[True, True, True, False], na_position="last", ignore_index=True))
    table["rank"] = table.groupby([key, "target", "labels"], sort=False).cumcount() + 1
    return table[[*columns, "rank", *BOOT_COUNTS]]
