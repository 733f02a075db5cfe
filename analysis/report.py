"""The analysis report: load -> filter -> statistics -> figures -> one self-contained HTML page.

    build_report("results/", "results/report")   # -> "results/report/report.html"

Writes into `out_dir`: fig1..fig8 as PNG and PDF, `ranking.csv` (`analysis.ranking`: every measure by
every criterion of Jiang et al. 2020 and Dziugaite et al. 2020 beside the Spearman rho; figure 8 draws it),
`stats.csv` and `stats.parquet` (the `analysis.stats.measure_table` of the kept trials: both gaps, in
column `target`, and label strata, in `labels`), `headline.txt` (`analysis.headline`: rank correlations of
the Jacobian norm and of transitions with the gap chosen by `gap`, per data set, all and true-label nets,
with 95% bootstrap CIs),
`intervention.csv` and `intervention_pairs.csv` (regularized nets vs their unregularized twins,
`analysis.intervention`; the section and figure 7 are skipped, saying why, without regularized
trials), `findings.csv` and `findings.txt` (`analysis.findings`: the reference study's findings, one row
each with a verdict; the page opens with them) and `report.html` (figures as base64 PNG, so the file can
be mailed alone). Everything is rebuilt from the Parquet tables, except figure 6, which recomputes one
trial (see `region_trial`).
A report always renders: empty sections say why they are empty.
"""

from __future__ import annotations

import os
import sys
import warnings
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd

from analysis import filter_trials, load_points, load_trajectories, load_trials
from analysis.figures import (fig1_jacobian_vs_gap, fig2_transitions, fig3_per_point, fig4_pairs, fig5_manifold,
                              fig6_linear_regions, fig7_regularizers)
from analysis.findings import findings_table, write_findings
from analysis.figures.ranking import fig8_ranking
from analysis.headline import headline
from analysis.intervention import conclusion, intervention_effects, regularizer_pairs
from analysis.report_html import FigureEntry, InterventionSection, render_html
from analysis.ranking import ranking_table, standing
from analysis.stats import measure_table
from analysis.strata import TARGETS, gap_column
from analysis.versions import coverage
from study.config import ConfigError
from study.nonlinearities import KINKS
from study.schema import config_from_record
from study.records import write_atomic

TARGET = "gap.loss"  # figure 6 takes the trial of median loss gap; the headline's target is `gap`
FIG6_MAX_SECONDS = 600.0  # prefer a trial that took at most this long to recompute figure 6


class ReportError(ValueError):
    """Nothing to report on (no trials at the location); the message says what to do."""


@dataclass
class ReportInputs:
    """What the report is built from: the loaded and filtered tables and the statistics."""

    trials: pd.DataFrame
    kept: pd.DataFrame
    dropped: pd.DataFrame
    drop_summary: str
    points: pd.DataFrame
    trajectories: pd.DataFrame
    stats: pd.DataFrame
    load_warnings: list[str] = field(default_factory=list)
    measures: pd.DataFrame | None = None  # analysis.versions.coverage of the loaded trials


def load_inputs(results_dir: str, n_boot: int = 1000, gap: str = "accuracy") -> ReportInputs:
    """Load the three tables, filter the trials, compute the statistics of the kept ones (against both
    gap targets and per label stratum, `analysis.stats.measure_table`; the rows of `gap` first)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trials = load_trials(results_dir)
        if not len(trials):
            raise ReportError(f"no trials under {results_dir}: expected {results_dir}/trials/<trial_id>.parquet "
                              "files; run a sweep into this directory first")
        filtered = filter_trials(trials)
        kept = filtered.kept
        ids = list(kept["trial_id"])
        points = load_points(results_dir, trial_ids=ids) if ids else pd.DataFrame(columns=["trial_id"])
        trajectories = load_trajectories(results_dir, trial_ids=ids) if ids else pd.DataFrame(columns=["trial_id"])
    first = gap_column(gap)
    stats = measure_table(kept, targets=[first, *(t for t in TARGETS if t != first)], n_boot=n_boot) \
        if len(kept) else pd.DataFrame()
    return ReportInputs(trials, kept, filtered.dropped, filtered.summary(), points, trajectories, stats,
                        [str(w.message) for w in caught], coverage(results_dir, trials))


# -- text summaries ---------------------------------------------------------------------------------

def sweep_metadata(trials: pd.DataFrame, kept: pd.DataFrame) -> dict[str, object]:
    """Number of trials, data sets, swept factors (hp.* with more than one value) and their values,
    time range of the records and total compute time (sum of time.total_s over all trials)."""
    swept = {}
    for column in sorted(c for c in trials.columns if c.startswith("hp.")):
        values = trials[column].dropna().unique()
        if len(values) > 1:
            swept[column[3:]] = sorted(values.tolist(), key=lambda v: (str(type(v)), v))
    created = pd.to_datetime(trials["created_at"], utc=True) if "created_at" in trials else pd.Series([], dtype=object)
    seconds = pd.to_numeric(trials.get("time.total_s", pd.Series(dtype=float)), errors="coerce")
    return {
        "trials": len(trials), "kept": len(kept),
        "datasets": sorted(trials["hp.dataset"].dropna().astype(str).unique()) if "hp.dataset" in trials else [],
        "swept": swept,
        "first": None if created.dropna().empty else created.min(),
        "last": None if created.dropna().empty else created.max(),
        "compute_s": float(seconds.sum(skipna=True)),
    }


# -- figure 6: one recomputed trial ----------------------------------------------------------------

def region_trial(kept: pd.DataFrame, max_seconds: float = FIG6_MAX_SECONDS) -> pd.Series | None:
    """The trial figure 6 recomputes: among kept ReLU trials (else piecewise-linear, else any), those
    that took at most `max_seconds` when possible, of the fewest hidden neurons (a legible number of
    regions on the slice), the one with the median loss gap."""
    if not len(kept):
        return None
    nonlinearity = kept.get("hp.nonlinearity", pd.Series("", index=kept.index))
    for mask in (nonlinearity == "relu", nonlinearity.map(lambda v: KINKS.get(v) is not None),
                 pd.Series(True, index=kept.index)):
        candidates = kept[mask.fillna(False).astype(bool)]
        if len(candidates):
            break
    seconds = pd.to_numeric(candidates.get("time.total_s", pd.Series(np.nan, index=candidates.index)))
    quick = candidates[~(seconds > max_seconds)]
    candidates = quick if len(quick) else candidates
    if "model.n_neurons" in candidates and candidates["model.n_neurons"].notna().any():
        neurons = pd.to_numeric(candidates["model.n_neurons"])
        candidates = candidates[neurons == neurons.min()]
    ordered = candidates.sort_values([TARGET, "trial_id"], na_position="last")
    return ordered.iloc[(len(ordered) - 1) // 2]


def _figure6(kept: pd.DataFrame, out_dir: str, data_root: str | None, device: str, recompute: bool,
             log: Callable[[str], None]) -> FigureEntry:
    title = "Figure 6: linear regions on a slice through three training points"
    if not recompute:
        return FigureEntry(title, note="Not drawn: recomputing a trial was switched off.")
    row = region_trial(kept)
    if row is None:
        return FigureEntry(title, note="Not drawn: no trial was kept, so there is no trained net to show.")
    try:
        cfg = config_from_record(row)
        log(f"figure 6: recomputing trial {row['trial_id']} on {device} ...")
        paths = fig6_linear_regions(cfg, out_dir, data_root=data_root, device=device)
    except (ConfigError, ImportError, OSError, RuntimeError, ValueError) as exc:  # data missing, failed recompute
        return FigureEntry(title, note=f"Not drawn: recomputing trial {row['trial_id']} failed: "
                                       f"{type(exc).__name__}: {exc}")
    note = (f"Trial {row['trial_id']} ({cfg.dataset}, {cfg.nonlinearity}, width {cfg.width}, depth {cfg.depth}; "
            f"gap {row[TARGET]:.3g} nats, the median among the candidates), recomputed from its config on {device}.")
    if cfg.trial_id != row["trial_id"]:
        note += (f" Warning: the config now hashes to {cfg.trial_id}, not the recorded id: the code that "
                 "computes trials changed since (ALGORITHM_VERSION), so the net may differ from the recorded one.")
    return FigureEntry(title, paths=paths, note=note)


# -- regularizers: regularized nets vs their unregularized twins -------------------------------------

def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def intervention_section(trials: pd.DataFrame, kept: pd.DataFrame, out_dir: str, n_boot: int,
                         log: Callable[[str], None]) -> InterventionSection:
    """Pairs of kept trials (a regularized net and its unregularized twin), their effects with CIs
    (written to intervention.csv, the pairs to intervention_pairs.csv), one sentence per regularizer
    and figure 7. Without regularized trials, or without pairs, the section says why it is empty."""
    regularizer = trials["hp.regularizer"].fillna("none") if "hp.regularizer" in trials else pd.Series(dtype=object)
    n_loaded = int((regularizer != "none").sum())
    pairs = regularizer_pairs(kept)
    effects = intervention_effects(pairs, n_boot=n_boot)
    effects.to_csv(os.path.join(out_dir, "intervention.csv"), index=False)
    pairs.to_csv(os.path.join(out_dir, "intervention_pairs.csv"), index=False)
    if n_loaded == 0:
        return InterventionSection("Skipped: no regularized trials (hp.regularizer is 'none' in every trial). Run a "
                                   "sweep that sets regularizer to compare regularized nets with their unregularized "
                                   "twins.")
    n_kept, unmatched = pairs.attrs["n_regularized"], pairs.attrs["unmatched"]
    listed = ", ".join(unmatched[:10]) + (" ..." if len(unmatched) > 10 else "")
    note = (f"{_plural(n_loaded, 'regularized trial')} loaded, {n_kept} kept by the filter (only nets that fit "
            f"their training set enter, as in the rest of the study); {_plural(len(pairs), 'pair')} with an "
            "unregularized twin (the same config with regularizer=none, also kept); "
            f"{_plural(len(unmatched), 'regularized trial')} without an unregularized twin (never run, or dropped "
            f"by the filter){': ' + listed if unmatched else ''}.")
    if pairs.attrs["duplicate_baselines"]:
        note += (f" {pairs.attrs['duplicate_baselines']} config(s) had more than one unregularized record; "
                 "the newest served.")
    if not len(pairs):
        return InterventionSection(note + " No pairs, so nothing to compare.")
    figure = _draw("Figure 7: regularized nets vs their unregularized twins",
                   lambda: fig7_regularizers(kept, out_dir, n_boot=n_boot), log,
                   "Rows 1-2: change of the loss gap against the ratio of the softmax and of the logit Jacobian "
                   "within pairs; row 3: test accuracy against strength, dashed: the unregularized twins.")
    return InterventionSection(note, conclusion(effects), effects, figure)


# -- the report -------------------------------------------------------------------------------------

def _draw(title: str, draw: Callable[[], list[str]], log: Callable[[str], None], note: str = "") -> FigureEntry:
    """Run one figure function; a failure becomes a note in the report, not a crash."""
    try:
        return FigureEntry(title, paths=draw(), note=note)
    except Exception as exc:  # one broken figure must not cost the whole report
        log(f"{title}: failed: {type(exc).__name__}: {exc}")
        return FigureEntry(title, note=f"Not drawn: {type(exc).__name__}: {exc}")


def build_report(results_dir: str, out_dir: str, data_root: str | None = None, device: str = "cpu",
                 recompute: bool = True, n_boot: int = 1000, log: Callable[[str], None] | None = None,
                 gap: str = "accuracy") -> str:
    """Build the report of the results under `results_dir` into `out_dir`; returns the report.html path.

    Raises ReportError if there are no trials at all. `recompute=False` skips figure 6 (the only
    step that trains a net); `n_boot` is the number of bootstrap resamples for the CIs; `gap` ("accuracy"
    or "loss") is the target of the headline and of figures 1 and 4."""
    log = log or (lambda message: print(message, file=sys.stderr))
    inputs = load_inputs(results_dir, n_boot, gap=gap)
    os.makedirs(out_dir, exist_ok=True)
    inputs.stats.to_csv(os.path.join(out_dir, "stats.csv"), index=False)
    inputs.stats.to_parquet(os.path.join(out_dir, "stats.parquet"), index=False)
    text = headline(inputs.stats, len(inputs.kept), gap=gap)
    with open(os.path.join(out_dir, "headline.txt"), "w") as handle:
        handle.write(text + "\n")
    kept, points, trajectories = inputs.kept, inputs.points, inputs.trajectories
    ranking = ranking_table(kept, n_boot=n_boot, stats=inputs.stats)
    csv = ranking.to_csv(index=False).encode("utf-8")
    write_atomic(out_dir, "ranking.csv", lambda sink: sink.write(csv))
    if len(kept):
        figures = [
            _draw("Figure 1: Jacobian norm vs generalization gap", lambda: fig1_jacobian_vs_gap(kept, out_dir, gap=gap),
                  log, "One point per kept net; panels per data set; color: nonlinearity; filled: true labels, "
                  "open: random labels."),
            _draw("Figure 2: transitions vs gap and vs size", lambda: fig2_transitions(kept, out_dir), log),
            _draw("Figure 3: per test point, Jacobian norm vs loss", lambda: fig3_per_point(points, kept, out_dir),
                  log, "Curves: docs/science.md section 3, Eq. 5-7, with M the median over the data set's nets."),
            _draw("Figure 4: paired factors", lambda: fig4_pairs(kept, out_dir, gap=gap), log),
            _draw("Figure 5: on vs off the data manifold", lambda: fig5_manifold(trajectories, out_dir, kept), log),
            _figure6(kept, out_dir, data_root, device, recompute, log),
            _draw("Figure 8: every measure ranked by the field's criteria",
                  lambda: fig8_ranking(kept, out_dir, ranking),
                  log, "Rows: measures, best true-label Spearman rho on top; Jacobian norms in red. Psi: Jiang et al. "
                  "2020's granulated Kendall; K: their conditional mutual information score (sign-blind); robust "
                  "sign error: Dziugaite et al. 2020 (0.5 = a coin). The numbers: ranking.csv and the table above."),
        ]
    else:
        figures = [FigureEntry("Figures", note="No figures: every trial was dropped by the filter (see above).")]
    intervention = intervention_section(inputs.trials, kept, out_dir, n_boot, log)
    findings = write_findings(findings_table(kept, points, trajectories, n_boot, loaded=inputs.trials), out_dir)
    page = render_html(results_dir=results_dir, meta=sweep_metadata(inputs.trials, kept), headline=text,
                       dropped=inputs.dropped, drop_summary=inputs.drop_summary, stats=inputs.stats,
                       figures=figures, load_warnings=inputs.load_warnings,
                       n_points=len(points), n_trajectories=len(trajectories), intervention=intervention,
                       findings=findings, measures=inputs.measures, ranking=ranking,
                       standing=standing(ranking))
    data = page.encode("utf-8")
    return write_atomic(out_dir, "report.html", lambda sink: sink.write(data))
