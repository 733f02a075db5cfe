"""HTML of the analysis report: one self-contained page (inline CSS, figures as base64 PNG).

Only presentation lives here; what is computed is in `analysis.report`.
"""

from __future__ import annotations

import base64
import datetime as dt
import os
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analysis.findings import TARGET, format_result
from analysis.html_parts import escape, table
from analysis.report_ranking import ranking_html
from analysis.verdicts import LEVEL, VERDICT_RULE

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 72rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.2rem; margin-top: 2rem; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; font-size: 0.85rem; margin: 0.5rem 0; }
th, td { padding: 0.2rem 0.6rem; border-bottom: 1px solid #e4e4e4; text-align: right; }
th { background: #f4f4f4; } td:first-child, th:first-child { text-align: left; }
pre { background: #f7f7f7; padding: 0.75rem; white-space: pre-wrap; }
figure { margin: 1rem 0 2rem; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 0.9rem; color: #444; } .empty { color: #a33; }
table.fit { table-layout: fixed; width: 100%; font-size: 0.78rem; }
table.fit th, table.fit td { padding: 0.2rem 0.3rem; overflow-wrap: break-word; }
table.stats th:first-child, table.stats td:first-child { width: 20%; }
table.fit th { font-weight: 600; vertical-align: bottom; }
table.stats th:first-child { width: 13rem; } table.stats th:nth-child(2) { width: 2.5rem; }
table.findings td { text-align: left; vertical-align: top; } table.findings th { text-align: left; }
table.findings th:nth-child(1) { width: 5rem; } table.findings th:nth-child(4) { width: 4.5rem; }
table.findings th:nth-child(5) { width: 8.5rem; } table.findings th:nth-child(6) { width: 2.5rem; }
table.findings th:nth-child(7) { width: 6.5rem; }
.holds { color: #1a7f37; font-weight: 600; } .does-not-hold { color: #b42318; font-weight: 600; }
.inconclusive { color: #8a6d00; } .no-data { color: #777; }
"""
STATS_COLUMNS = ["measure", "n", "spearman", "spearman_lo", "spearman_hi", "kendall", "kendall_lo", "kendall_hi",
                 "psi", "sign_error", "sign_error_worst", "worst_factor", "n_pairs", "rank"]
STATS_HEADERS = {"spearman": "ρ", "spearman_lo": "ρ lo", "spearman_hi": "ρ hi", "kendall": "τ",
                 "kendall_lo": "τ lo", "kendall_hi": "τ hi", "psi": "Ψ", "sign_error": "sign error",
                 "sign_error_worst": "worst sign error", "worst_factor": "worst", "n_pairs": "pairs"}
MAX_LISTED = 10  # a swept factor with more values is summarised: "99 values, 27..9824"


@dataclass
class FigureEntry:
    """One figure of the report: its files (PNG embedded, PDF linked) or a note saying why there are none."""

    title: str
    paths: list[str] = field(default_factory=list)
    note: str = ""


@dataclass
class InterventionSection:
    """The regularizer section: conclusions, the effects table, figure 7, or a note saying why it is skipped."""

    note: str  # counts (regularized trials, pairs, unmatched) or why the section is skipped
    conclusions: list[str] = field(default_factory=list)
    effects: pd.DataFrame | None = None
    figure: FigureEntry | None = None


INTERVENTION_TITLE = "Regularizers: does lowering the Jacobian lower the gap?"


def _values_text(values: list) -> str:
    """A swept factor's values: all of them, or with more than MAX_LISTED, their count and range."""
    if len(values) <= MAX_LISTED:
        return ", ".join(map(str, values))
    numbers = [v for v in values if isinstance(v, (int, float, np.integer, np.floating))
               and not isinstance(v, (bool, np.bool_))]
    if len(numbers) == len(values):
        return f"{len(values)} values, {min(numbers)}..{max(numbers)}"
    return f"{len(values)} values: " + ", ".join(map(str, values[:5])) + ", ..."


def _figure_html(entry: FigureEntry) -> str:
    png = next((p for p in entry.paths if p.endswith(".png")), None)
    parts = [f"<h2>{escape(entry.title)}</h2>"]
    if png is None:
        parts.append(f'<p class="empty">{escape(entry.note or "Not drawn.")}</p>')
        return "\n".join(parts)
    with open(png, "rb") as handle:
        encoded = base64.b64encode(handle.read()).decode("ascii")
    links = " ".join(f'<a href="{escape(os.path.basename(p))}">{escape(os.path.basename(p))}</a>'
                     for p in entry.paths)
    parts.append(f'<figure><img alt="{escape(entry.title)}" src="data:image/png;base64,{encoded}">'
                 f"<figcaption>{escape(entry.note)} Files: {links}</figcaption></figure>")
    return "\n".join(parts)


def _duration(seconds: float) -> str:
    if not np.isfinite(seconds):
        return "unknown"
    return f"{seconds / 3600:.2f} h" if seconds >= 3600 else f"{seconds:.0f} s"


def _meta_html(meta: dict, n_points: int, n_trajectories: int) -> str:
    rows = [("trials loaded", meta["trials"]), ("trials kept", meta["kept"]),
            ("data sets", ", ".join(meta["datasets"]) or "–"),
            ("points / trajectories rows (kept trials)", f"{n_points} / {n_trajectories}"),
            ("records from", f"{meta['first']} to {meta['last']}" if meta["first"] is not None else "unknown"),
            ("total compute time (sum of time.total_s)", _duration(meta["compute_s"]))]
    body = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in rows)
    swept = "".join(f"<tr><td>{escape(name)}</td><td>{len(values)}</td><td>{escape(_values_text(values))}</td></tr>"
                    for name, values in meta["swept"].items())
    swept_html = ("<table><tr><th>factor</th><th>levels</th><th>values</th></tr>" + swept + "</table>" if swept
                  else "<p>No factor takes more than one value: nothing was swept.</p>")
    return f"<table>{body}</table><h3>Swept factors</h3>{swept_html}"


def _measures_html(measures: pd.DataFrame | None) -> str:
    """Per measure: the version registered now, and the versions the loaded values come from, with how many
    trials have each and how many of those were computed after the trial (`sensitivity measure`)."""
    if measures is None or not len(measures):
        return ""
    rows = []
    for name, group in measures.groupby("measure", sort=False):
        for row in group.sort_values("version", ascending=False).itertuples(index=False):
            source = "no values" if row.version == 0 else f"v{row.version}"
            stale = " (older than registered)" if 0 < row.version < row.current else ""
            rows.append(f"<tr><td>{escape(name)}</td><td>v{row.current}</td><td>{escape(source + stale)}</td>"
                        f"<td>{row.trials}</td><td>{row.later}</td></tr>")
    return ("<h3>Measures: which version computed the values</h3><table><tr><th>measure</th><th>registered</th>"
            "<th>values</th><th>trials</th><th>computed after the trial</th></tr>" + "".join(rows) + "</table>"
            "<p>No values: a measure the trial did not run (diverged, or registered later), or a record from "
            "before measures had versions. <code>sensitivity measure DIR</code> computes missing and older values "
            "from the kept nets.</p>")


def _stats_html(stats: pd.DataFrame) -> str:
    """Per data set, one table per (target, label stratum) where the stats have those columns, so each
    table keeps STATS_COLUMNS alone (it fits the page: table.fit)."""
    if stats is None or not len(stats):
        return '<p class="empty">No statistics: no trials were kept, or no measure varies across them.</p>'
    by = stats.columns[0]
    split = [c for c in ("target", "labels") if c in stats.columns]
    blocks = []
    for value, group in stats.groupby(by, sort=True):
        blocks.append(f"<h3>{escape(value)}</h3>")
        for key, part in (group.groupby(split, sort=False) if split else [((), group)]):
            columns = [c for c in STATS_COLUMNS if c in part.columns]
            shown = part[columns].assign(measure=part["measure"].astype(str).str.removeprefix("measure."))
            title = ", ".join(f"{name} {v}" for name, v in zip(split, key if isinstance(key, tuple) else (key,)))
            blocks.append((f"<h4>{escape(title)}</h4>" if title else "")
                          + table(shown.rename(columns=STATS_HEADERS), "fit stats"))
    return ("<p>Per data set and measure: rank correlation with the gap (bootstrap 95% CI), granulated "
            "Kendall &Psi; (Jiang et al. 2020), sign-error over coupled pairs (Dziugaite et al. 2020); a table "
            "per gap target and label stratum (all nets, true-label, random-label) where the statistics have "
            "them. Measures are the trials' measure.* columns, named without the prefix. Also in stats.csv "
            "and stats.parquet.</p>" + "".join(blocks))


def _interval(row: pd.Series, name: str, transform=lambda v: v, digits: int = 3) -> str:
    value, lo, hi = (row.get(f"{name}{end}", np.nan) for end in ("", "_lo", "_hi"))
    if value is None or not np.isfinite(value):
        return "–"
    text = f"{transform(value):.{digits}f}"
    if lo is not None and np.isfinite(lo) and np.isfinite(hi):
        text += f" [{transform(lo):.{digits}f}, {transform(hi):.{digits}f}]"
    return text


def _effects_table(effects: pd.DataFrame) -> pd.DataFrame:
    """The effects of analysis.intervention as a readable table: ratios as exp(log ratio), CIs in brackets."""
    ratio = np.exp
    rows = []
    for _, row in effects.iterrows():
        rows.append({
            "regularizer": row["method"] if row["level"] == "regularizer" else "",
            "setting": row["setting"] if row["level"] == "strength" else f"all ({row['setting']})",
            "pairs": int(row["n"]),
            "Δ loss gap (nats)": _interval(row, "d_gap_loss"),
            "softmax J ratio (median)": _interval(row, "softmax_log_ratio", ratio, 2),
            "logit J ratio (median)": _interval(row, "logit_log_ratio", ratio, 2),
            "softmax J down": f"{row['frac_softmax_down']:.0%}" if np.isfinite(row["frac_softmax_down"]) else "–",
            "logit J down": f"{row['frac_logit_down']:.0%}" if np.isfinite(row["frac_logit_down"]) else "–",
            "gap down": f"{row['frac_gap_down']:.0%}" if np.isfinite(row["frac_gap_down"]) else "–",
            "Spearman ΔJ softmax vs Δgap": _interval(row, "spearman", digits=2),
            "Δ test accuracy": _interval(row, "d_test_accuracy"),
        })
    return pd.DataFrame(rows)


def _intervention_html(section: InterventionSection | None) -> str:
    if section is None:
        return ""
    parts = [f"<h2>{escape(INTERVENTION_TITLE)}</h2>", f"<p>{escape(section.note)}</p>"]
    if section.conclusions:
        items = "".join(f"<li>{escape(sentence)}</li>" for sentence in section.conclusions)
        parts.append("<h3>What was measured</h3><ul>" + items + "</ul>")
    if section.effects is not None and len(section.effects):
        parts.append("<h3>Effects within pairs (regularized − unregularized twin)</h3>"
                     "<p>Means (Δ) and medians (Jacobian ratios J<sub>reg</sub>/J<sub>base</sub>) with 95% "
                     "percentile-bootstrap CIs; a change counts as a rise or fall only when its CI excludes no "
                     "change. Also in intervention.csv (log ratios) and intervention_pairs.csv.</p>"
                     + table(_effects_table(section.effects), "fit"))
    if section.figure is not None:
        parts.append(_figure_html(section.figure).replace("<h2>", "<h3>").replace("</h2>", "</h3>"))
    return "\n".join(parts)


FINDINGS_TITLE = "Findings of the reference study (Novak et al. 2018), tested on these nets"
FINDINGS_SHOWN = ("finding", "claim", "statistic", "predicted", "result", "n", "verdict", "note")


def _findings_html(findings: pd.DataFrame | None) -> str:
    """The findings table (analysis.findings: one row per finding, verdict colored) and the verdict rule."""
    if findings is None:
        return ""
    head = (f"<h2>{escape(FINDINGS_TITLE)}</h2><p>Each finding of docs/science.md section 1 as one number "
            f"from the kept nets, with its {LEVEL:.0%} CI, n and a verdict. Test error is {escape(TARGET)} "
            "(the nets kept are those that fit their training set, as in the paper); J is the test Jacobian "
            "norm. Also in findings.csv and findings.txt.</p>"
            f"<p><b>Verdict rule.</b> {escape(VERDICT_RULE)}</p>")
    if not len(findings):
        return head + '<p class="empty">No findings computed.</p>'
    header = "".join(f"<th>{escape(name)}</th>" for name in FINDINGS_SHOWN)
    rows = []
    for _, row in findings.iterrows():
        css = str(row["verdict"]).replace(" ", "-")
        cells = [row["finding"], row["claim"], row["statistic"], row["predicted"], format_result(row),
                 int(row["n"]), row["verdict"], row["note"] if isinstance(row["note"], str) else ""]
        rows.append("<tr>" + "".join(f'<td class="{css}">{escape(c)}</td>' if name == "verdict"
                                     else f"<td>{escape(c)}</td>" for name, c in zip(FINDINGS_SHOWN, cells))
                    + "</tr>")
    return head + f'<table class="fit findings"><tr>{header}</tr>{"".join(rows)}</table>'


def render_html(results_dir: str, meta: dict, headline: str, dropped: pd.DataFrame, drop_summary: str,
                stats: pd.DataFrame, figures: list[FigureEntry], load_warnings: list[str],
                n_points: int, n_trajectories: int, intervention: InterventionSection | None = None,
                findings: pd.DataFrame | None = None, measures: pd.DataFrame | None = None,
                ranking: pd.DataFrame | None = None, standing: list[str] | None = None) -> str:
    """The whole page as a string; it opens with the findings table (`_findings_html`) when given."""
    dropped_html = (table(dropped) if dropped is not None and len(dropped)
                    else "<p>No trial was dropped.</p>")
    warn_html = ("<h3>Files skipped while loading</h3><pre>" + escape("\n".join(load_warnings)) + "</pre>"
                 if load_warnings else "")
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    sections = [
        f"<h1>Sensitivity and generalization: analysis of {escape(results_dir)}</h1>",
        f"<p>Built {now} from the Parquet tables alone (figure 6 recomputes one trial).</p>",
        _findings_html(findings),
        f"<h2>Headline</h2><pre>{escape(headline)}</pre>",
        f"<h2>Sweep</h2>{_meta_html(meta, n_points, n_trajectories)}{_measures_html(measures)}",
        f"<h2>Filter: what was dropped, and why</h2><pre>{escape(drop_summary)}</pre>{dropped_html}{warn_html}",
        f"<h2>Statistics</h2>{_stats_html(stats)}",
        ranking_html(ranking, standing or []),
        *(_figure_html(entry) for entry in figures),
        _intervention_html(intervention),
    ]
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>Sensitivity study report</title>"
            f"<style>{STYLE}</style></head><body>" + "\n".join(sections) + "</body></html>\n")
