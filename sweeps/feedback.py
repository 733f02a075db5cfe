"""Feeding a finished sweep back: its worst-generalizing configs become the bases of an intervention sweep.

    sensitivity sweep regularizers --from DIR --top K --out R
    sensitivity sweep regularizers --from DIR --where "`hp.width` >= 256 and `gap.loss` > 0.5" --out R

Candidates are DIR's trials (analysis.load.load_trials) that the analysis keeps: status ok, with a
finite gap.loss. `--where EXPR` keeps the candidates for which EXPR is true: a pandas
DataFrame.query expression over the trials table's columns, dotted names in backticks
(`hp.width`, `gap.loss`, `measure.jacobian_test`). `--top K` keeps the K with the largest gap.loss
(ties broken by trial_id); with both, the K largest-gap trials among those matching EXPR.

Each selected row becomes a TrialConfig again from its hp.* columns (other columns are ignored; a
field an older record lacks takes its default), with the intervention's baseline fields reset (e.g.
regularizer none: the base is the row's unregularized twin, whatever the row was). Every other field
is kept exactly, so selecting from an unregularized sweep reproduces its trials as the twins. Rows
that share a twin (two regularized variants of one base) count once toward K. `--set FIELD=VALUE`
then pins a field of every base, and `expand_bases` adds the variants.
"""

from __future__ import annotations

import argparse
import difflib
import math
import os
import re
from collections import Counter
from typing import Sequence

import pandas as pd

from study.config import ConfigError, TrialConfig
from study.schema import config_from_record
from sweeps.presets import Preset
from sweeps.sampling import Overrides, PlannedTrial, Sample, Space, narrow_intervention, sweep_id, with_variants

EXAMPLE_WHERE = '"`hp.width` >= 256 and `gap.loss` > 0.5"'


def check_arguments(args: argparse.Namespace, preset: Preset) -> None:
    """ConfigError (one line) for --from / --top / --where combinations that cannot work; reads nothing."""
    if args.top is not None and args.top < 1:
        raise ConfigError(f"--top must be a positive integer, got {args.top}")
    if args.from_dir is None:
        for flag, value in (("--top", args.top), ("--where", args.where)):
            if value is not None:
                raise ConfigError(f"{flag} selects trials of a finished sweep: give that sweep's directory "
                                  "with --from DIR")
        return
    if preset.intervention is None:
        raise ConfigError(f"--from reruns selected configs under an intervention, which preset {preset.name} does not "
                          "have; use a preset with one (e.g. regularizers)")
    if args.top is None and args.where is None:
        raise ConfigError("--from needs --top K (the K largest-gap trials) or --where EXPR (a query), or both")
    if args.num_samples is not None:
        raise ConfigError("--num-samples does not apply with --from: the selected configs are the bases (use --top K)")


def load_candidates(location: str) -> tuple[pd.DataFrame, int, Counter]:
    """(the trials with status ok and a finite gap.loss, all trials, their statuses); ConfigError if none exist."""
    from analysis.load import load_trials

    if "://" not in location and not os.path.isdir(location):
        raise ConfigError(f"--from {location}: no such directory; give the --out of a finished sweep")
    try:
        trials = load_trials(location)
    except Exception as exc:  # e.g. an unreachable bucket: say so in one line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"--from {location} cannot be read: {first}") from None
    if not len(trials):
        raise ConfigError(f"--from {location} holds no trial records (trials/*.parquet); give the --out of a "
                          "finished sweep")
    gap = pd.to_numeric(trials["gap.loss"], errors="coerce").astype(float)
    kept = trials[(trials["status"] == "ok") & gap.map(math.isfinite)].reset_index(drop=True)
    statuses = Counter(trials["status"].fillna("missing"))
    if not len(kept):
        listed = ", ".join(f"{s} {n}" for s, n in statuses.most_common())
        raise ConfigError(f"--from {location}: none of its {len(trials)} trials has status ok and a finite gap.loss "
                          f"({listed}); nothing to select")
    return kept, len(trials), statuses


def condition(candidates: pd.DataFrame, where: str) -> pd.Series:
    """The boolean mask of `where` (a pandas query, dotted names in backticks) over rows of the trials table;
    ConfigError (one line) otherwise. Also `sensitivity measure --where`."""
    for name in re.findall(r"`([^`]*)`", where):
        if name not in candidates.columns:
            close = difflib.get_close_matches(name, [str(c) for c in candidates.columns], n=1)
            raise ConfigError(f"--where {where!r}: the trials table has no column `{name}`"
                              + (f"; did you mean `{close[0]}`?" if close else "; columns look like `hp.width`, "
                                 "`gap.loss`, `measure.jacobian_test`"))
    try:
        mask = candidates.eval(where, engine="python")
    except Exception as exc:  # SyntaxError, an unknown bare name, ...
        text = " ".join(str(exc).split()) or type(exc).__name__
        raise ConfigError(f"--where {where!r} is not a query over the trials table ({type(exc).__name__}: "
                          f"{text[:200]}); e.g. --where {EXAMPLE_WHERE} (backtick-quote dotted names)") from None
    if not (isinstance(mask, pd.Series) and pd.api.types.is_bool_dtype(mask) and mask.index.equals(candidates.index)):
        raise ConfigError(f"--where {where!r} is not a condition (true or false for each trial); "
                          f"e.g. --where {EXAMPLE_WHERE}")
    return mask


def select_rows(candidates: pd.DataFrame, where: str | None) -> pd.DataFrame:
    """The candidates matching `where` (all of them without it) in decreasing gap.loss, ties by trial_id
    (select_bases takes the first K distinct bases). ConfigError (one line) for a bad or empty query."""
    rows = candidates
    if where is not None:
        rows = candidates[condition(candidates, where)]
        if not len(rows):
            raise ConfigError(f"--where {where!r} matches none of the {len(candidates)} trials with status ok")
    order = rows.assign(_gap=pd.to_numeric(rows["gap.loss"]).astype(float))
    return order.sort_values(["_gap", "trial_id"], ascending=[False, True], kind="stable").drop(columns="_gap")


def select_bases(location: str, preset: Preset, top: int | None,
                 where: str | None) -> tuple[list[TrialConfig], list[str]]:
    """(the base configs, the trial ids of DIR's rows they came from), in decreasing gap.loss."""
    candidates, _, _ = load_candidates(location)
    rows = select_rows(candidates, where)
    bases: dict[str, TrialConfig] = {}
    sources = []
    for _, row in rows.iterrows():
        try:
            cfg = config_from_record(row, **preset.intervention.baseline)
        except ConfigError as exc:
            raise ConfigError(f"--from {location}: trial {row['trial_id']} is not a valid config now: {exc}") from None
        if cfg.trial_id in bases:
            continue
        bases[cfg.trial_id] = cfg
        sources.append(str(row["trial_id"]))
        if top is not None and len(bases) == top:
            break
    return list(bases.values()), sources


def expand_bases(preset: Preset, bases: Sequence[TrialConfig], overrides: Overrides, seed: int) -> Sample:
    """A sample of an intervention preset whose base configs are given, not drawn (the module docstring).

    Each base keeps every field, except the intervention's baseline fields (reset: its twin) and the
    fields pinned by `--set FIELD=VALUE`; its twin and usable variants follow, as in `sample`. Bases that
    coincide after that are run once; a base without a usable variant is left out (with a note)."""
    if preset.intervention is None:
        raise ConfigError(f"preset {preset.name} has no intervention to apply to selected configs; use --from "
                          "with a preset that has one (e.g. regularizers)")
    intervention = narrow_intervention(preset, overrides)
    pins = {}
    for name, values in overrides.items():
        if name in intervention.baseline:
            continue
        if len(values) > 1:
            raise ConfigError(f"--set {name}={','.join(map(str, values))}: with --from, --set pins a field of every "
                              "selected config; give one value")
        pins[name] = values[0]
    space = Space({}, {}, {}, (), False, preset.max_gib, intervention)
    trials: list[PlannedTrial] = []
    seen: set[str] = set()
    left_out, repeated = [], 0
    for base in bases:
        batch = with_variants(space, {**base.canonical(), **pins})
        if batch is None:
            left_out.append(base.trial_id)
        elif batch[0].trial_id in seen:
            repeated += 1
        else:
            trials.extend(batch)
            seen.add(batch[0].trial_id)
    notes = []
    if left_out:
        notes.append(f"note: {len(left_out)} selected configs have no usable variant (or exceed the memory cap) "
                     f"and are left out: {', '.join(left_out[:5])}" + (" ..." if len(left_out) > 5 else ""))
    if repeated:
        notes.append(f"note: {repeated} selected configs have the same twin as another one; each twin runs once")
    ids = [b.trial_id for b in bases]
    return Sample(tuple(trials), len(bases), False, sweep_id(preset.name, overrides, seed, len(bases), ids),
                  tuple(notes))
