"""The ranking of every measure by the field's criteria, on the same nets: one row per (data set, target,
measure), the table behind `ranking.csv` and the report's ranking figure.

Criteria (columns), each of a measure against a target (TARGETS: the accuracy gap, which at 100% train
accuracy is the test error Novak et al. 2018 correlate with, and the loss gap):

    spearman_all, _lo, _hi     Spearman rho over every kept net, 95% percentile-bootstrap CI (analysis.stats)
    spearman_true, _lo, _hi    the same over the true-label nets (analysis.strata)
    psi                        Jiang et al. 2020's granulated Kendall Psi (analysis.stats.granulated_kendall)
    cmi, cmi_argmin            Jiang et al. 2020's conditional mutual information score K and the conditioning
                               set reaching it (analysis.cmi); K does not see the sign: a measure that
                               falls as the gap grows scores as high as one that rises
    rse_mean, rse_worst        Dziugaite et al. 2020's robust sign error: the mean and the maximum (worst case)
    rse_worst_axis, rse_environments  of the loss over the kept environments (analysis.robust_sign), the axis
                               of the worst one and how many were kept; 0 = always the gap's direction, 0.5 =
                               a coin
    psi.<axis>, rse_mean.<axis>, rse_worst.<axis>   the same per swept axis (psi_i; the mean and the worst
                               environment of that axis), after the columns above

Psi, K and the sign error are computed over the true-label nets: they compare nets that differ in one
hyperparameter, and a random-label net differs from a true-label one in what the gap means (the paper's
populations are kept apart). On a sweep of true-label nets only (the grid preset) the two Spearman columns
are equal. Each criterion gets a rank within its (data set, target): rank_<criterion>, 1 = best (largest
rho, Psi and K; smallest sign errors); NaN values are not ranked.
"""

from __future__ import annotations

import math
from typing import Iterable

import numpy as np
import pandas as pd

from analysis.cmi import cmi_score
from analysis.robust_sign import robust_sign_error
from analysis.stats import default_measures, granulated_kendall, rank_correlations
from analysis.strata import TARGETS, label_mask

CRITERIA = {  # criterion column -> True if larger is better
    "spearman_all": True, "spearman_true": True, "psi": True, "cmi": True, "rse_mean": False, "rse_worst": False,
}
COLUMNS = ("group", "target", "measure", "n_all", "n_true", "spearman_all", "spearman_all_lo", "spearman_all_hi",
           "spearman_true", "spearman_true_lo", "spearman_true_hi", "psi", "cmi", "cmi_argmin", "rse_mean",
           "rse_worst", "rse_worst_axis", "rse_environments")


def _spearman(frame: pd.DataFrame, measure: str, target: str, n_boot: int,
              seed: int) -> tuple[int, float, float, float]:
    corr = rank_correlations(frame, measure, target, n_boot=n_boot, seed=seed)
    return int(corr["n"]), corr["spearman"], corr["spearman_lo"], corr["spearman_hi"]


def _worst_axis(result: dict) -> str | None:
    """The axis of the worst kept environment; None when there is none, or no environment has a sign error."""
    axes = {a: v["max"] for a, v in result["per_axis"].items() if np.isfinite(v["max"])}
    worst = max(axes, key=axes.get) if axes else None
    return worst if worst is not None and axes[worst] > 0 else None


def _from_stats(stats: pd.DataFrame, group: object, measure: str, target: str, labels: str) -> tuple | None:
    """(n, rho, lo, hi) of an analysis.stats.measure_table row, or None where it has none."""
    key = next((c for c in stats.columns if c.startswith("hp.") or c == "group"), None)
    if key is None:
        return None
    row = stats[(stats[key] == group) & (stats["measure"] == measure) & (stats["target"] == target)
                & (stats["labels"] == labels)]
    if len(row) != 1:
        return None
    row = row.iloc[0]
    return int(row["n"]), row["spearman"], row["spearman_lo"], row["spearman_hi"]


def ranking_rows(frame: pd.DataFrame, measure: str, target: str, n_boot: int = 1000, seed: int = 0,
                 stats: pd.DataFrame | None = None, group: object = "all") -> dict:
    """The COLUMNS of one measure against one target over the rows of `frame` (group left to the caller). The
    Spearman columns come from `stats` (a measure_table of the same rows, e.g. the report's) where it has them."""
    true = frame[label_mask(frame, "true")]
    known = [None, None] if stats is None else [_from_stats(stats, group, measure, target, s) for s in ("all", "true")]
    n_all, rho_all, lo_all, hi_all = known[0] or _spearman(frame, measure, target, n_boot, seed)
    n_true, rho_true, lo_true, hi_true = known[1] or _spearman(true, measure, target, n_boot, seed)
    kendall = granulated_kendall(true, measure, target) if len(true) else {"Psi": math.nan, "psi": {}}
    psi = kendall["Psi"]
    cmi = cmi_score(true, measure, target) if len(true) else {"k": math.nan, "argmin": None}
    rse = robust_sign_error(true, measure, target) if len(true) else None
    per_axis = {f"psi.{axis}": value for axis, value in kendall["psi"].items()}
    for axis, values in (rse["per_axis"] if rse else {}).items():
        per_axis.update({f"rse_mean.{axis}": values["mean"], f"rse_worst.{axis}": values["max"]})
    return {"target": target, "measure": measure, "n_all": n_all, "n_true": n_true,
            "spearman_all": rho_all, "spearman_all_lo": lo_all, "spearman_all_hi": hi_all,
            "spearman_true": rho_true, "spearman_true_lo": lo_true, "spearman_true_hi": hi_true,
            "psi": psi, "cmi": cmi["k"],
            "cmi_argmin": None if cmi["argmin"] is None else "+".join(cmi["argmin"]) or "(none)",
            "rse_mean": rse["mean"] if rse else math.nan, "rse_worst": rse["max"] if rse else math.nan,
            "rse_worst_axis": _worst_axis(rse) if rse else None,
            "rse_environments": int(rse["environments"]) if rse else 0, **per_axis}


def ranking_table(df: pd.DataFrame, measures: Iterable[str] | None = None, targets: Iterable[str] = TARGETS,
                  by: str | None = "hp.dataset", n_boot: int = 1000, seed: int = 0,
                  stats: pd.DataFrame | None = None) -> pd.DataFrame:
    """COLUMNS, the per-axis columns, then rank_<criterion> for every criterion of CRITERIA, one row per
    (group, target, measure); `group` is the value of `by` (one ranking per data set), or "all" when `by` is
    None or absent. Measures
    default to analysis.stats.default_measures(df); targets absent from df are left out. Rows are in the
    order of the targets given, then by spearman_true, best first. `stats`: an analysis.stats.measure_table of
    the same rows (same `by`, n_boot and seed), whose Spearman CIs are reused rather than bootstrapped again."""
    measures = default_measures(df) if measures is None else list(measures)
    targets = [t for t in targets if t in df.columns]
    groups = df.groupby(by, sort=True) if by is not None and by in df.columns else [("all", df)]
    rows = [{"group": value, **ranking_rows(group, measure, target, n_boot, seed, stats, value)}
            for value, group in groups for target in targets for measure in measures]
    extra = sorted({k for row in rows for k in row} - set(COLUMNS), key=lambda k: (k.split(".", 1)[1], k))
    table = pd.DataFrame(rows, columns=[*COLUMNS, *extra])
    for criterion, larger in CRITERIA.items():
        values = pd.to_numeric(table[criterion], errors="coerce")
        table[f"rank_{criterion}"] = values.groupby([table["group"], table["target"]]).rank(
            ascending=not larger, method="min")
    order = {t: i for i, t in enumerate(targets)}
    table = table.assign(_target=table["target"].map(order)).sort_values(
        ["group", "_target", "spearman_true"], ascending=[True, True, False], na_position="last", ignore_index=True)
    return table.drop(columns="_target")


def standing(table: pd.DataFrame, measure: str = "measure.jacobian_test") -> list[str]:
    """One line per (group, target): where `measure` ranks by each criterion, "value (rank k of m)", with the
    number of measures tied at that rank when there are any."""
    lines = []
    for (group, target), rows in table.groupby(["group", "target"], sort=False):
        mine = rows[rows["measure"] == measure]
        if not len(mine):
            continue
        parts = []
        for criterion in CRITERIA:
            ranked = int(rows[criterion].notna().sum())
            value, rank = mine[criterion].iloc[0], mine[f"rank_{criterion}"].iloc[0]
            tied = int((rows[f"rank_{criterion}"] == rank).sum()) - 1 if pd.notna(rank) else 0
            parts.append(f"{criterion} {value:+.3f} (rank {int(rank)} of {ranked}"
                         + (f", tied with {tied})" if tied else ")") if pd.notna(rank) else f"{criterion} -")
        lines.append(f"{group}, {target}: {measure}: " + "; ".join(parts))
    return lines
