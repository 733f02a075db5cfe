"""The findings of the reference study (Novak et al. 2018, docs/science.md), one row each, tested on our nets.

    findings_table(kept_trials, points, trajectories)   # -> one row per finding, with a verdict
    findings_text(table)                                 # -> the rows with data, one line each
    write_findings(table, out_dir); read_findings(out_dir)  # findings.csv and findings.txt; the text back

Test error is the accuracy gap (`gap.accuracy`): the nets that enter are those at 100% train accuracy,
as in the paper. Rows:
  a, a_true   J (measure.jacobian_test) correlates with test error: all nets; true-label nets only.
  b_error     transitions (measure.transitions_test) do not correlate with test error ...
  b_neurons   ... but grow with the number of neurons (model.n_neurons).
  c, d, e, f  paired nets (pair_id): random labels, full batch raise test error and J; augmentation, ReLU lower them.
  g           J is lower along ellipses through training points than along random ellipses.
  h_rank      per test point, J rises with the point's loss (per net Spearman, median over nets).
  h_band      per test point, ||J_y||_2 lies in the Eq. 5 band around the loss.
How a number becomes a verdict is analysis.verdicts (VERDICT_RULE, printed beside the table in the report).
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
from scipy import stats as sps

from analysis.bootstrap import bootstrap_statistic
from analysis.figures.per_point import per_point_bounds
from analysis.stats import coupled_pairs, rank_correlations
from analysis.verdicts import LEVEL, NULL_MARGIN, binomial_ci, verdict

TARGET = "gap.accuracy"  # test error of a net at 100% train accuracy
JACOBIAN, TRANSITIONS, NEURONS = "measure.jacobian_test", "measure.transitions_test", "model.n_neurons"
COLUMNS = ["finding", "claim", "statistic", "predicted", "value", "lo", "hi", "n", "verdict", "note"]
PREDICTED = {"positive": "rho > 0", "negative": "rho < 0", "null": f"|rho| < {NULL_MARGIN}", "fraction": "> 0.5"}
PAIRS = (  # finding, factor, reference value, sign of (other - reference) the paper found, the other net, claim
    ("c", "random_labels", 0.0, +1, "random-label", "Random labels raise test error and J (vs the true-label twin)."),
    ("d", "full_batch", False, +1, "full-batch", "Full-batch training raises test error and J (vs minibatches)."),
    ("e", "augment", False, -1, "augmented", "Data augmentation lowers test error and J."),
    ("f", "nonlinearity", "relu", +1, "non-ReLU",
     "ReLU nets have lower test error and J than with another nonlinearity."),
)
RUN_PAIRS = "run `sensitivity sweep pairs`"


def _row(finding: str, claim: str, statistic: str, kind: str, value: float, lo: float, hi: float, n: int,
         note: str = "") -> dict:
    result, why = verdict(kind, value, lo, hi, n)
    note = "; ".join(part for part in (why if result != "no data" else "", note) if part)
    return {"finding": finding, "claim": claim, "statistic": statistic, "predicted": PREDICTED[kind],
            "value": value, "lo": lo, "hi": hi, "n": int(n), "verdict": result, "note": note}


def _correlation(trials: pd.DataFrame, finding: str, claim: str, x: str, y: str, kind: str, who: str,
                 n_boot: int, seed: int) -> dict:
    """Spearman rho of columns x and y over the nets of `trials`, with its bootstrap CI."""
    statistic = f"Spearman rho({x}, {y}), {who}"
    missing = [c for c in (x, y) if c not in trials.columns]
    if missing or not len(trials):
        why = f"column {missing[0]} not in the trials table" if missing else f"no kept nets ({who})"
        return _row(finding, claim, statistic, kind, np.nan, np.nan, np.nan, 0, why)
    corr = rank_correlations(trials, x, y, n_boot=n_boot, seed=seed, level=LEVEL)
    n = int(corr["n"])
    note = f"{n} nets with both values" if n else f"no net has both {x} and {y}"
    return _row(finding, claim, statistic, kind, corr["spearman"], corr["spearman_lo"], corr["spearman_hi"], n, note)


def correlation_rows(trials: pd.DataFrame, n_boot: int = 1000, seed: int = 0) -> list[dict]:
    """Rows a, a_true, b_error, b_neurons."""
    true = trials[pd.to_numeric(trials["hp.random_labels"], errors="coerce") == 0] \
        if "hp.random_labels" in trials.columns else trials.iloc[:0]
    claim_a = "The Jacobian norm J correlates with test error across nets."
    return [
        _correlation(trials, "a", claim_a, JACOBIAN, TARGET, "positive", "all nets", n_boot, seed),
        _correlation(true, "a_true", claim_a, JACOBIAN, TARGET, "positive", "true-label nets", n_boot, seed),
        _correlation(trials, "b_error", "Transitions do not correlate with test error.", TRANSITIONS, TARGET,
                     "null", "all nets", n_boot, seed),
        _correlation(trials, "b_neurons", "Transitions grow with the number of neurons.", TRANSITIONS, NEURONS,
                     "positive", "all nets", n_boot, seed),
    ]


def _oriented(rows: pd.DataFrame, factor: str, reference: object) -> tuple[pd.Series, pd.Series] | None:
    """(reference member, other member) of a two-row pair, or None if the factor does not tell them apart."""
    column = f"hp.{factor}"
    if len(rows) != 2 or column not in rows.columns:
        return None
    is_ref = [value == reference for value in rows[column]]
    return (rows.iloc[is_ref.index(True)], rows.iloc[is_ref.index(False)]) if sum(is_ref) == 1 else None


def _pair_row(pairs: list[pd.DataFrame], finding: str, factor: str, reference: object, sign: int, other: str,
              claim: str, in_sweep: dict[str, int]) -> dict:
    up = "higher" if sign > 0 else "lower"
    statistic = f"share of {factor} pairs with test error and J both {up} in the {other} net"
    moved = {"error": 0, "J": 0, "both": 0}
    n = incomplete = 0
    for rows in pairs:
        members = _oriented(rows, factor, reference)
        values = [pd.to_numeric(pd.Series([m.get(c) for m in members], dtype=object), errors="coerce")
                  .to_numpy(float, na_value=np.nan) for c in (TARGET, JACOBIAN)] if members else []
        if not values or not all(np.isfinite(v).all() for v in values):
            incomplete += 1
            continue
        n += 1
        error_ok, j_ok = (np.sign(v[1] - v[0]) == sign for v in values)
        moved["error"] += int(error_ok)
        moved["J"] += int(j_ok)
        moved["both"] += int(error_ok and j_ok)
    if not n:
        return _row(finding, claim, statistic, "fraction", np.nan, np.nan, np.nan, 0, _no_pairs(factor, in_sweep))
    lo, hi = binomial_ci(moved["both"], n)
    note = f"test error {up} in {moved['error']}/{n}, J {up} in {moved['J']}/{n} (a tie counts as not)"
    if incomplete:
        note += f"; {incomplete} pair(s) incomplete: a member dropped by the filter, or a value missing"
    return _row(finding, claim, statistic, "fraction", moved["both"] / n, lo, hi, n, note)


def _no_pairs(factor: str, in_sweep: dict[str, int]) -> str:
    """Why a paired factor has no complete pair: none in the sweep at all, none of this factor, or none kept."""
    if in_sweep.get(factor):
        return (f"{in_sweep[factor]} {factor} pair(s) in the sweep, none with both nets kept and measured (a net "
                f"that does not fit its training set is dropped); {RUN_PAIRS} with a larger -n")
    if any(in_sweep.values()):
        return f"no {factor} pairs in this sweep (each pair draws one factor); {RUN_PAIRS} with a larger -n"
    return f"no pairs in this sweep: {RUN_PAIRS}"


def pair_rows(trials: pd.DataFrame, loaded: pd.DataFrame | None = None) -> list[dict]:
    """Rows c-f: per paired factor, the share of pairs in which test error and J move as the paper found.
    `loaded` (all trials, before the filter; default `trials`) only serves to say why a factor has no pairs."""
    found, _ = coupled_pairs(trials) if "pair_id" in trials.columns else ([], 0)  # a lone member: incomplete
    loaded = trials if loaded is None else loaded
    in_sweep = (loaded.dropna(subset=["pair_id"]).groupby("pair.factor")["pair_id"].nunique().to_dict()
                if {"pair_id", "pair.factor"} <= set(loaded.columns) else {})
    return [_pair_row([frame for name, frame in found if name == factor], finding, factor, reference, sign, other,
                      claim, in_sweep) for finding, factor, reference, sign, other, claim in PAIRS]


def _net_means(trajectories: pd.DataFrame, trials: pd.DataFrame) -> pd.DataFrame:
    """Per kept net: mean jacobian_mean along train-point ellipses ('train') and random ellipses ('random')."""
    columns = {"train": "measure.jacobian_trajectory_train", "random": "measure.jacobian_trajectory_random"}
    ids = set(trials["trial_id"]) if "trial_id" in trials.columns else set()
    if trajectories is not None and len(trajectories) and {"kind", "jacobian_mean"} <= set(trajectories.columns):
        frame = trajectories[trajectories["trial_id"].isin(ids)]
        side = frame["kind"].map(lambda k: "train" if str(k).startswith("train") else k)
        frame = frame.assign(side=side)[side.isin(["train", "random"])]
        return frame.pivot_table(index="trial_id", columns="side", values="jacobian_mean", aggfunc="mean")
    if set(columns.values()) <= set(trials.columns):
        return trials.set_index("trial_id")[list(columns.values())].set_axis(list(columns), axis=1)
    return pd.DataFrame(columns=list(columns))


def trajectory_row(trials: pd.DataFrame, trajectories: pd.DataFrame) -> dict:
    """Row g: the share of nets whose J along train-point ellipses is below that along random ellipses."""
    claim = "J is lower along ellipses through training points than along random ellipses."
    statistic = "share of nets with mean J(train-point ellipses) < mean J(random ellipses)"
    means = _net_means(trajectories, trials)
    means = means.reindex(columns=["train", "random"]).apply(pd.to_numeric, errors="coerce").dropna()
    n, k = len(means), int((means["train"] < means["random"]).sum())
    if not n:
        return _row("g", claim, statistic, "fraction", np.nan, np.nan, np.nan, 0,
                    "no kept net has J measured along both train-point and random ellipses")
    lo, hi = binomial_ci(k, n)
    ratio = float(np.median(means["train"] / means["random"]))
    return _row("g", claim, statistic, "fraction", k / n, lo, hi, n,
                f"{k}/{n} nets; median ratio train / random {ratio:.3g}")


def _per_net_points(points: pd.DataFrame, trials: pd.DataFrame) -> pd.DataFrame:  # test points, kept nets
    keep = [c for c in ("trial_id", "data.n_classes", "measure.logit_jacobian_sq_test") if c in trials.columns]
    if points is None or not len(points) or "split" not in points.columns or "trial_id" not in keep:
        return pd.DataFrame(columns=["trial_id", "loss", "jacobian"])
    return points[points["split"] == "test"].merge(trials[keep], on="trial_id", how="inner")


def per_point_rows(points: pd.DataFrame, trials: pd.DataFrame, n_boot: int = 1000, seed: int = 0) -> list[dict]:
    """Rows h_rank (median over nets of the per-net Spearman of J and loss over test points) and h_band."""
    data = _per_net_points(points, trials)
    rhos, shares = [], []
    for _, net in data.groupby("trial_id", sort=True):
        xy = net[["jacobian", "loss"]].apply(pd.to_numeric, errors="coerce").dropna()
        if len(xy) >= 3 and xy["jacobian"].nunique() > 1 and xy["loss"].nunique() > 1:
            rhos.append(sps.spearmanr(xy["jacobian"], xy["loss"]).statistic)
        m_sq, n_classes = (net[c].iloc[0] if c in net.columns else np.nan
                           for c in ("measure.logit_jacobian_sq_test", "data.n_classes"))
        band = net[["loss", "jacobian_y"]].dropna() if "jacobian_y" in net.columns else net.iloc[:0]
        if len(band) and np.isfinite(m_sq) and n_classes >= 2:
            bounds = per_point_bounds(band["loss"].to_numpy(float), m_sq / n_classes, int(n_classes))
            y = band["jacobian_y"].to_numpy(float)
            shares.append(float(np.mean((bounds["lower"] <= y) & (y <= bounds["upper"]))))
    rank = bootstrap_statistic(np.array(rhos, float), np.median, n_boot=n_boot, seed=seed, level=LEVEL)
    band = bootstrap_statistic(np.array(shares, float), np.mean, n_boot=n_boot, seed=seed, level=LEVEL)
    nets = data["trial_id"].nunique()
    return [
        _row("h_rank", "Per test point, J rises with the point's loss.",
             "median over nets of Spearman rho(J, loss) over a net's test points", "positive", rank.estimate,
             rank.lo, rank.hi, len(rhos), f"{nets} nets with test points, {len(rhos)} with a defined rho"
             if nets else "no per-point measurements of test points for the kept nets"),
        _row("h_band", "Per test point, ||J_y||_2 lies in the Eq. 5 band set by the loss.",
             "mean over nets of the share of test points with Eq. 5 lower <= ||J_y||_2 <= upper (M per net)",
             "fraction", band.estimate, band.lo, band.hi, len(shares),
             f"{len(shares)} nets with jacobian_y and measure.logit_jacobian_sq_test; bootstrap CI over nets"
             if shares else "no test points with jacobian_y, or no measure.logit_jacobian_sq_test"),
    ]


def findings_table(trials: pd.DataFrame, points: pd.DataFrame | None = None,
                   trajectories: pd.DataFrame | None = None, n_boot: int = 1000, seed: int = 0,
                   loaded: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per finding (COLUMNS) on the given (kept) trials, their points and trajectories tables;
    `loaded` (every trial, before the filter) lets a paired factor without pairs say why."""
    trials = trials if trials is not None else pd.DataFrame()
    rows = [*correlation_rows(trials, n_boot, seed), *pair_rows(trials, loaded), trajectory_row(trials, trajectories),
            *per_point_rows(points, trials, n_boot, seed)]
    return pd.DataFrame(rows, columns=COLUMNS)


def format_value(value: float, predicted: str = "") -> str:
    """A finding's number: a correlation signed (+0.42), a fraction plain (0.42), n/a when missing."""
    if value is None or not np.isfinite(value):
        return "n/a"
    return f"{value:.2f}" if predicted == PREDICTED["fraction"] else f"{value:+.2f}"


def format_result(row: pd.Series) -> str:
    """value [lo, hi] of a findings row, or 'value [no CI]'."""
    value = format_value(row["value"], row["predicted"])
    if value == "n/a" or not np.isfinite(row["lo"]) or not np.isfinite(row["hi"]):
        return value + ("" if value == "n/a" else " [no CI]")
    return f"{value} [{format_value(row['lo'], row['predicted'])}, {format_value(row['hi'], row['predicted'])}]"


def findings_text(table: pd.DataFrame) -> str:
    """The rows with data, one line each (id, verdict, value [CI], n, statistic); then the ids without data."""
    lines = [f"Findings of Novak et al. 2018 on these nets ({LEVEL:.0%} CIs; rule in the report, findings.csv):"]
    for _, row in table[table["verdict"] != "no data"].iterrows():
        lines.append(f"  {row['finding']:<9} {row['verdict']:<13} {format_result(row):<21} n={int(row['n']):<4} "
                     f"{row['statistic']}")
    empty = table[table["verdict"] == "no data"]
    if len(empty):
        lines.append(f"  no data: {', '.join(empty['finding'])}")
    return "\n".join(lines)


def write_findings(table: pd.DataFrame, out_dir: str) -> pd.DataFrame:
    """Write `table` to out_dir/findings.csv and its `findings_text` to out_dir/findings.txt; return it."""
    table.to_csv(os.path.join(out_dir, "findings.csv"), index=False)
    with open(os.path.join(out_dir, "findings.txt"), "w", encoding="utf-8") as handle:
        handle.write(findings_text(table) + "\n")
    return table


def read_findings(out_dir: str) -> str:
    """The text of out_dir/findings.txt (newline-terminated), or "" where there is none."""
    path = os.path.join(out_dir, "findings.txt")
    if not os.path.exists(path):
        return ""
    with open(path, encoding="utf-8") as handle:
        return handle.read()
