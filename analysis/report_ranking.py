"""The report's ranking section: analysis.ranking's table, one HTML table per (data set, target), then the
per-axis values."""

from __future__ import annotations

import pandas as pd

from analysis.html_parts import escape, table


def _cell(row: pd.Series, name: str, digits: int = 3) -> str:
    """A criterion's value with its rank in brackets, or "–"."""
    value, rank = row[name], row.get(f"rank_{name}")
    return "–" if pd.isna(value) else f"{value:.{digits}f}" + (f" [{int(rank)}]" if pd.notna(rank) else "")


def _with_ci(row: pd.Series, name: str) -> str:
    """_cell and the 95% CI in parentheses, where there is one."""
    lo, hi = row[f"{name}_lo"], row[f"{name}_hi"]
    return _cell(row, name) + ("" if pd.isna(lo) else f" ({lo:.2f}, {hi:.2f})")


def _per_axis(row: pd.Series, axis: str) -> str:
    """'psi_i / sign error mean / sign error worst' of one axis."""
    values = (row.get(f"{k}.{axis}") for k in ("psi", "rse_mean", "rse_worst"))
    return " / ".join("–" if v is None or pd.isna(v) else f"{v:.2f}" for v in values)


def ranking_html(ranking: pd.DataFrame | None, standing: list[str]) -> str:
    """The ranking table (analysis.ranking): one table per (group, target), rows = measures."""
    head = "<h2>Ranking: the Jacobian norm among the field's measures</h2>"
    if ranking is None or not len(ranking):
        return head + "<p>No ranking: no measure with two distinct values among the kept nets.</p>"
    parts = [head, "<p>Spearman rho with 95% bootstrap CIs over every net and over the true-label nets; Psi, the "
             "CMI score K and the robust sign error (mean and worst environment, the axis of the worst) over the "
             "true-label nets. Ranks in brackets; ranking.csv holds every column.</p>",
             "<pre>" + escape("\n".join(standing)) + "</pre>" if standing else ""]
    if not ranking["psi"].notna().any() and not ranking["rse_mean"].notna().any():
        parts.append("<p>Psi and the robust sign error are undefined here: they compare trials that differ in one "
                     "hyperparameter axis only, and no two trials of this sweep do. The <code>grid</code> preset "
                     "(<code>sensitivity sweep grid</code>) runs every combination of its axes.</p>")
    for (group, target), rows in ranking.groupby(["group", "target"], sort=False):
        shown = pd.DataFrame({
            "measure": rows["measure"].str.removeprefix("measure."),
            "n": rows["n_all"],
            "Spearman, all": [_with_ci(r, "spearman_all") for _, r in rows.iterrows()],
            "Spearman, true": [_with_ci(r, "spearman_true") for _, r in rows.iterrows()],
            "Psi": [_cell(r, "psi") for _, r in rows.iterrows()],
            "CMI K": [_cell(r, "cmi") for _, r in rows.iterrows()],
            "sign error, mean": [_cell(r, "rse_mean") for _, r in rows.iterrows()],
            "sign error, worst": [_cell(r, "rse_worst") + (f" ({r['rse_worst_axis'].removeprefix('hp.')})"
                                  if isinstance(r["rse_worst_axis"], str) else "") for _, r in rows.iterrows()],
            "environments": rows["rse_environments"],
        })
        parts.append(f"<h3>{escape(group)}: against {escape(target)}</h3>{table(shown, 'fit')}")
        axes = [c.removeprefix("psi.") for c in rows.columns if c.startswith("psi.") and rows[c].notna().any()]
        if axes:  # per axis: psi_i, and the sign error's mean / worst environment of that axis
            detail = pd.DataFrame({"measure": rows["measure"].str.removeprefix("measure."),
                                   **{a.removeprefix("hp."): [_per_axis(r, a) for _, r in rows.iterrows()]
                                      for a in axes}})
            parts.append("<p>Per axis: psi_i / sign error mean / sign error worst (over that axis's kept "
                         "environments).</p>" + table(detail, "fit"))
    return "".join(parts)
