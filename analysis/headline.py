"""The headline of the report (headline.txt, and the top of report.html): the measured rank correlations
of the Jacobian norm and of transitions with the chosen gap, per data set, over all nets and over the
true-label nets alone, with 95% bootstrap CIs. `analysis.report` re-exports `headline`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.strata import GAP_MEANINGS, gap_column

HEADLINE_MEASURES = {"measure.jacobian_test": "Jacobian norm (test)",
                     "measure.transitions_test": "transitions (test ellipses)"}


def _ci(row: pd.Series, name: str) -> str:
    value, lo, hi = row.get(name), row.get(f"{name}_lo"), row.get(f"{name}_hi")
    if value is None or not np.isfinite(value):
        return f"{name.capitalize()} n/a"
    finite, n_boot = row.get(f"{name}_n_boot_finite"), row.get("n_boot")  # absent in older stats tables
    short = f"{int(finite)}/{int(n_boot)} resamples" if finite is not None and n_boot is not None and \
        0 <= finite < n_boot else ""  # the CI rests on only part of the resamples: say so
    if lo is not None and np.isfinite(lo) and np.isfinite(hi):
        interval = f" [{lo:.2f}, {hi:.2f}{'; ' + short if short else ''}]"
    else:
        interval = f" (no CI: defined on only {short})" if short else ""
    return f"{name.capitalize()} {value:+.2f}{interval}"


def _correlation_parts(rows: pd.DataFrame, measures: dict[str, str]) -> str:
    """"name: Spearman .. [..], Kendall .. [..] (n = ..)" for each headline measure among `rows`."""
    parts = []
    for measure, name in measures.items():
        match = rows[rows["measure"] == measure]
        if not len(match):
            parts.append(f"{name}: not measured")
            continue
        row = match.iloc[0]
        if not np.isfinite(row.get("spearman", np.nan)):
            parts.append(f"{name}: n/a (n = {int(row['n'])}, too few trials or no variation)")
        else:
            parts.append(f"{name}: {_ci(row, 'spearman')}, {_ci(row, 'kendall')} (n = {int(row['n'])})")
    return "; ".join(parts)


def headline(stats: pd.DataFrame, n_kept: int | None = None, measures: dict[str, str] = HEADLINE_MEASURES,
             gap: str = "accuracy") -> str:
    """Plain text: per data set, the measured Spearman and Kendall of each headline measure with the
    gap `gap` ("accuracy": gap.accuracy, "loss": gap.loss; the first line names it), with 95% bootstrap
    CIs in brackets ("report what was measured"): a line over all nets, then one over the true-label
    nets alone (stats `labels` "all" and "true"; random-label nets differ from them in both J and the
    gap). A CI whose coefficient was undefined on some resamples says on how many it rests, and none
    is given below half. A stats table without `target` and `labels` columns (older ones) is read as
    the pooled rows of `gap`."""
    target = gap_column(gap)
    if stats is None or not len(stats):
        if n_kept == 0:
            return "No rank correlations: no trial was kept for the analysis (see what was dropped)."
        return (f"No rank correlations: {n_kept if n_kept is not None else 'too few'} kept trial(s), "
                "and a correlation needs at least two with different values of a measure.")
    by = stats.columns[0]  # measure_table's grouping column comes first (hp.dataset by default)
    stratified = "labels" in stats.columns
    lines = [f"Rank correlation with the generalization gap ({target}: {GAP_MEANINGS[target]}), 95% bootstrap "
             "CI in brackets" + ("; all nets, then the true-label nets alone:" if stratified else ":")]
    for dataset, group in stats.groupby(by, sort=True):
        rows = group[group["target"] == target] if "target" in group.columns else group
        pooled = rows[rows["labels"] == "all"] if stratified else rows
        n = int(pooled["n"].max()) if len(pooled) else 0
        lines.append(f"- {dataset} ({n} nets): " + _correlation_parts(pooled, measures))
        if stratified:
            true = rows[rows["labels"] == "true"]
            n_true = int(true["n"].max()) if len(true) else 0
            lines.append(f"  true-label nets only ({n_true} of {n}): " +
                         (_correlation_parts(true, measures) if n_true else "none among the kept nets"))
    return "\n".join(lines)
