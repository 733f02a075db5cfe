"""Closing the loop: does lowering the Jacobian norm, by a regularizer, lower the generalization gap?

The correlational study (figures 1-5) finds nets with a larger softmax Jacobian ||d softmax/dx||_F
generalize worse. The regularizers of docs/science.md section 4 intervene on a Jacobian directly, so
the comparison here is within pairs: a regularized trial and its unregularized *twin*, the trial
whose config is identical but for the regularizer settings (same data, seed, initial weights).

    pairs   = regularizer_pairs(trials)          # one row per (regularized, twin) pair, deltas
    effects = intervention_effects(pairs)        # per regularizer and per strength, bootstrap CIs
    conclusion(effects)                          # one sentence per regularizer

Both Jacobians are always reported. They can move apart: a penalty on the *logit* Jacobian that
shrinks the logits leaves the softmax less saturated, and since ||d softmax/dx|| = ||(diag p -
p p^T) dh/dx||, the softmax Jacobian can rise while the logit Jacobian falls. A sentence therefore
names the Jacobian that moved and the direction it moved in.

Deltas are regularized - baseline; Jacobians are compared as natural-log ratios ln(J_reg / J_base)
(scale-free, so pairs from different data sets pool). A change is called a rise or a fall only when
its 95% percentile-bootstrap CI excludes 0; otherwise "no clear change".
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from analysis.bootstrap import bootstrap_statistic
from analysis.stats import rank_correlations
from study.config import REGULARIZER_FIELDS, REGULARIZERS, UNREGULARIZED

REG_FIELDS = REGULARIZER_FIELDS
BASELINE = UNREGULARIZED  # regularizer=none and its defaults
MIN_PAIRS_CI = 3  # fewer pairs: no confidence interval, no conclusion
MIN_PAIRS_CORRELATION = 5  # Spearman(dJ, dgap) only from this many pairs on
DELTAS = {  # delta column -> trials column it differences
    "d_gap_loss": "gap.loss", "d_gap_accuracy": "gap.accuracy", "d_jacobian": "measure.jacobian_test",
    "d_logit_jacobian": "measure.logit_jacobian_test", "d_test_accuracy": "test.accuracy",
}
LOG_RATIOS = {"log_ratio_jacobian": "measure.jacobian_test", "log_ratio_logit_jacobian": "measure.logit_jacobian_test"}
PAIR_KEYS = ["method", "regularizer", "reg_target", "reg_strength", "reg_projections", "noise_std", "strength",
             "setting", "dataset", "trial_id", "baseline_id"]
PAIR_COLUMNS = [*PAIR_KEYS, "test_accuracy", "test_accuracy_base", *DELTAS, *LOG_RATIOS]


def strength_column(regularizer: str) -> str:
    """The setting that measures how hard a regularizer acts: noise_std for input noise, else reg_strength."""
    return "noise_std" if regularizer == "input_noise" else "reg_strength"


def method_name(regularizer: str, reg_target: str) -> str:
    """Regularizer name, marked when its penalty differentiates the softmax rather than the logits."""
    return f"{regularizer} (softmax target)" if reg_target == "softmax" else regularizer


def method_key(method: str) -> tuple[int, bool, str]:
    """Sort key of method names: study.config.REGULARIZERS order, the logit target before the softmax one."""
    regularizer = method.split(" ", 1)[0]
    index = REGULARIZERS.index(regularizer) if regularizer in REGULARIZERS else len(REGULARIZERS)
    return index, method != regularizer, method


def _setting(row: dict) -> str:
    """Human-readable settings of one regularized trial, e.g. 'λ=0.01', 'σ=0.1', 'λ=1, σ=0.1, 4 proj.'."""
    parts = []
    if row["reg_strength"] > 0:
        parts.append(f"λ={row['reg_strength']:g}")
    if row["noise_std"] > 0:
        parts.append(f"σ={row['noise_std']:g}")
    if row["reg_projections"] != 1:
        parts.append(f"{int(row['reg_projections'])} proj.")
    return ", ".join(parts) or "default"


def _with_regularizer_defaults(trials: pd.DataFrame) -> pd.DataFrame:
    """The regularizer columns, a missing or null value read as the unregularized default (older records)."""
    out = pd.DataFrame(index=trials.index)
    for name, default in BASELINE.items():
        column = trials[f"hp.{name}"] if f"hp.{name}" in trials else pd.Series(default, index=trials.index)
        out[name] = column.astype(object).where(column.notna(), default)
    return out


def _number(frame: pd.DataFrame, column: str) -> np.ndarray:
    if column not in frame:
        return np.full(len(frame), np.nan)
    return pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def _twins(trials: pd.DataFrame, reg: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Row numbers of every regularized trial ("row") and of its twin ("twin", NaN if none), in trials
    order, and the number of configs with more than one baseline.

    A left `pandas.merge` of the regularized trials on the baselines, keyed by the hp.* columns except
    the regularizer fields (missing values match each other: merge pairs NaN keys with NaN keys). Of
    duplicate baselines the newest created_at serves (NaT counts as oldest; a tie: the earlier row)."""
    on = [*sorted(c for c in trials.columns if c.startswith("hp.") and c[3:] not in REG_FIELDS), "__all"]
    frame = trials[on[:-1]].assign(__all=0, __row=np.arange(len(trials)))
    is_base = np.logical_and.reduce([(reg[n] == v).to_numpy(dtype=bool) for n, v in BASELINE.items()])
    created = pd.to_datetime(trials["created_at"], utc=True) if "created_at" in trials else pd.NaT
    base = frame.assign(__created=created)[is_base].sort_values(["__created", "__row"], ascending=[False, True],
                                                                 na_position="last")
    duplicates = len(base.loc[base.duplicated(on, keep=False), on].drop_duplicates())
    base = base.drop_duplicates(on, keep="first")[[*on, "__row"]].rename(columns={"__row": "twin"})
    regularized = frame[(reg["regularizer"] != "none").to_numpy()].rename(columns={"__row": "row"})
    matched = regularized.merge(base, on=on, how="left", validate="many_to_one")
    return matched[["row", "twin"]], duplicates


def regularizer_pairs(trials: pd.DataFrame) -> pd.DataFrame:
    """Match every regularized trial (hp.regularizer != "none") to its unregularized twin.

    The twin has identical hp.* values except the regularizer fields, which are at their baseline
    values (regularizer="none", reg_strength=0, reg_target="logits", reg_projections=1,
    noise_std=0; a missing or null regularizer field reads as its baseline value); a hp.* value
    missing in both matches. One baseline may serve many regularized trials; `pair_id` is not
    used. If two baselines share a config (records of different code versions), the newest
    `created_at` serves. The join is a `pandas.merge` (`_twins`).

    One row per matched pair (columns PAIR_COLUMNS): method, the regularizer settings, `strength`
    (noise_std for input_noise, else reg_strength), `setting` (text), dataset, trial_id (regularized),
    baseline_id, test accuracy of both, the deltas regularized - baseline of DELTAS, and the log
    ratios ln(J_reg / J_base) of the softmax and logit Jacobians (NaN unless both are > 0). Sorted
    by method (`method_key`), then strength, setting, dataset, trial_id.
    `.attrs`: "n_regularized" (regularized trials seen), "unmatched" (ids of regularized trials
    without a twin), "duplicate_baselines" (configs with more than one baseline record).
    """
    trials = trials.reset_index(drop=True)
    reg = _with_regularizer_defaults(trials)
    twins, duplicates = _twins(trials, reg)
    ids = np.array([str(v) for v in trials["trial_id"]], dtype=object)
    found = twins["twin"].notna().to_numpy()
    rows, base_rows = twins["row"].to_numpy()[found], twins["twin"].to_numpy()[found].astype(int)
    settings = [{**s, "reg_strength": float(s["reg_strength"]), "noise_std": float(s["noise_std"]),
                 "reg_projections": int(s["reg_projections"])} for s in reg.iloc[rows].to_dict("records")]
    datasets = trials["hp.dataset"].to_numpy()[rows] if "hp.dataset" in trials else [""] * len(rows)
    pairs = pd.DataFrame([{"method": method_name(s["regularizer"], s["reg_target"]), **s,
                           "strength": s[strength_column(s["regularizer"])], "setting": _setting(s),
                           "dataset": str(dataset), "trial_id": ids[i], "baseline_id": ids[j]}
                          for s, dataset, i, j in zip(settings, datasets, rows, base_rows)], columns=PAIR_KEYS)
    after, before = trials.iloc[rows], trials.iloc[base_rows]
    pairs["test_accuracy"], pairs["test_accuracy_base"] = (_number(t, "test.accuracy") for t in (after, before))
    for delta, column in DELTAS.items():
        pairs[delta] = _number(after, column) - _number(before, column)
    for ratio, column in LOG_RATIOS.items():
        a, b = _number(after, column), _number(before, column)
        with np.errstate(divide="ignore", invalid="ignore"):
            pairs[ratio] = np.where((a > 0) & (b > 0), np.log(a / b), np.nan)
    pairs = pairs.sort_values(["strength", "setting", "dataset", "trial_id"], ignore_index=True)
    pairs = pairs.sort_values("method", key=lambda m: m.map(method_key), kind="stable", ignore_index=True)
    pairs.attrs.update(n_regularized=len(twins), unmatched=sorted(ids[twins["row"].to_numpy()[~found]].tolist()),
                       duplicate_baselines=duplicates)
    return pairs


# -- effects --------------------------------------------------------------------------------------

def _fraction_below_zero(values: pd.Series) -> float:
    v = values.to_numpy(dtype=float)
    v = v[np.isfinite(v)]
    return float((v < 0).mean()) if len(v) else math.nan


EFFECT_STATS = (  # output name, pairs column, statistic
    ("d_gap_loss", "d_gap_loss", np.mean), ("d_gap_accuracy", "d_gap_accuracy", np.mean),
    ("d_test_accuracy", "d_test_accuracy", np.mean), ("softmax_log_ratio", "log_ratio_jacobian", np.median),
    ("logit_log_ratio", "log_ratio_logit_jacobian", np.median))
FRACTIONS_DOWN = {"frac_softmax_down": "log_ratio_jacobian", "frac_logit_down": "log_ratio_logit_jacobian",
                  "frac_gap_down": "d_gap_loss"}


def _effect_row(group: pd.DataFrame, n_boot: int, seed: int) -> dict:
    row: dict = {"n": len(group), "n_datasets": group["dataset"].nunique()}
    cis = {name: bootstrap_statistic(group[column], statistic, n_boot, seed, min_n=MIN_PAIRS_CI)
           for name, column, statistic in EFFECT_STATS}
    for name, ci in cis.items():
        row.update({name: ci.estimate, f"{name}_lo": ci.lo, f"{name}_hi": ci.hi})
    row.update({name: _fraction_below_zero(group[column]) for name, column in FRACTIONS_DOWN.items()})
    corr = {"spearman": math.nan, "spearman_lo": math.nan, "spearman_hi": math.nan, "spearman_n_boot_finite": 0}
    if len(group) >= MIN_PAIRS_CORRELATION:
        measured = rank_correlations(group, "d_jacobian", "d_gap_loss", n_boot=n_boot, seed=seed)
        if measured["n"] >= MIN_PAIRS_CORRELATION:
            corr = {k: measured[k] for k in corr}
    finite = {f"{name}_n_boot_finite": ci.n_finite for name, ci in cis.items()}  # after the existing columns
    return {**row, **corr, **finite, "n_boot": max(int(n_boot), 0)}


def intervention_effects(pairs: pd.DataFrame, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Per regularizer (level "regularizer", all strengths pooled) and per regularizer x setting
    (level "strength"), over the matched pairs of `regularizer_pairs`:

    n (pairs), n_datasets; mean d_gap_loss, d_gap_accuracy, d_test_accuracy and the median
    softmax_log_ratio and logit_log_ratio (ln J_reg/J_base), each with `_lo`/`_hi` 95% bootstrap
    CIs (`analysis.bootstrap.bootstrap_statistic`, seeded by `seed`: same input, same numbers; none
    from fewer than MIN_PAIRS_CI pairs, which would claim too much); the fractions of pairs whose
    softmax Jacobian, logit Jacobian, loss gap went down; Spearman rho between d_jacobian
    (softmax) and d_gap_loss with its bootstrap CI when n >= MIN_PAIRS_CORRELATION (else NaN).
    Then, per CI, `<name>_n_boot_finite`: the finite replicates it rests on (0: no CI was drawn;
    fewer than half of n_boot: NaN bounds, see `analysis.bootstrap.percentile_bootstrap`), and n_boot.
    Sorted by method (`method_key`), then the pooled row before its strengths in increasing order.
    """
    meta = ["level", "method", "regularizer", "reg_target", "setting", "strength"]
    rows = []
    for method in sorted(pairs["method"].unique(), key=method_key):
        group = pairs[pairs["method"] == method]
        first = group.iloc[0]
        common = {"method": method, "regularizer": first["regularizer"], "reg_target": first["reg_target"]}
        settings = ", ".join(dict.fromkeys(group["setting"]))
        rows.append({"level": "regularizer", **common, "setting": settings, "strength": math.nan,
                     **_effect_row(group, n_boot, seed)})
        for (strength, setting), sub in group.groupby(["strength", "setting"], sort=True):
            rows.append({"level": "strength", **common, "setting": setting, "strength": float(strength),
                         **_effect_row(sub, n_boot, seed)})
    if not rows:
        return pd.DataFrame(columns=meta + ["n"])
    return pd.DataFrame(rows)


# -- conclusion -----------------------------------------------------------------------------------

def direction(estimate: float, lo: float, hi: float) -> str:
    """"down" / "up" when the CI [lo, hi] lies below / above 0, "none" when it contains 0, "unknown" without a CI."""
    if not (np.isfinite(lo) and np.isfinite(hi) and np.isfinite(estimate)):
        return "unknown"
    return "down" if hi < 0 else "up" if lo > 0 else "none"


def _fold(value: float) -> str:
    return f"{value:.2f}" if value < 2 else f"{value:.1f}"


def _num(value: float) -> str:
    return f"{value:.2g}" if value != 0 else "0"


def _jacobian_phrase(name: str, row: pd.Series, column: str) -> tuple[str, str]:
    """(direction, phrase) of one Jacobian, as a fold change with its CI."""
    m, lo, hi = row[column], row[f"{column}_lo"], row[f"{column}_hi"]
    way = direction(m, lo, hi)
    if way == "down":
        return way, f"the {name} Jacobian fell {_fold(math.exp(-m))}x [{_fold(math.exp(-hi))}, {_fold(math.exp(-lo))}]"
    if way == "up":
        return way, f"the {name} Jacobian rose {_fold(math.exp(m))}x [{_fold(math.exp(lo))}, {_fold(math.exp(hi))}]"
    if way == "none":
        return way, (f"the {name} Jacobian showed no clear change (ratio {_fold(math.exp(m))} "
                     f"[{_fold(math.exp(lo))}, {_fold(math.exp(hi))}])")
    return way, f"the {name} Jacobian was not measured in enough pairs" if not np.isfinite(m) else \
        f"the {name} Jacobian changed by a ratio of {_fold(math.exp(m))} (no CI)"


def conclusion_sentence(row: pd.Series) -> str:
    """One sentence for one row of `intervention_effects`: what each Jacobian and the gap did, and
    whether the gap moved with the Jacobian that fell."""
    head = f"{row['method']} (n={int(row['n'])}; {row['setting']})"
    if row["n"] < MIN_PAIRS_CI:
        return f"{head}: too few pairs for a confidence interval (at least {MIN_PAIRS_CI} needed); no conclusion."
    moves = {name: _jacobian_phrase(name, row, column)
             for name, column in (("softmax", "softmax_log_ratio"), ("logit", "logit_log_ratio"))}
    order = sorted(moves, key=lambda name: (moves[name][0] != "down", name != "softmax"))  # what fell first
    ways = [moves[name][0] for name in order]
    joiner = " and " if ways[0] == ways[1] else " while "
    jacobians = joiner.join(moves[name][1] for name in order)
    gap_way = direction(row["d_gap_loss"], row["d_gap_loss_lo"], row["d_gap_loss_hi"])
    gap_numbers = f"{_num(row['d_gap_loss'])} [{_num(row['d_gap_loss_lo'])}, {_num(row['d_gap_loss_hi'])}] nats"
    if gap_way == "none":
        gap = f"the loss gap showed no clear change ({gap_numbers})"
    elif gap_way == "unknown":
        gap = "the loss gap was not measured in enough pairs"
    else:
        gap = f"the loss gap changed by {gap_numbers}"
    fell = [name for name in order if moves[name][0] == "down"]
    if fell:
        subject = "both Jacobians" if len(fell) == 2 else f"the {fell[0]} Jacobian"
        verdict = {"down": "lowered the gap", "up": "raised the gap", "none": "did not clearly change the gap",
                   "unknown": "left the gap unmeasured"}[gap_way]
        verdict = f"lowering {subject} {verdict}"
    else:
        rose = [name for name in order if moves[name][0] == "up"]
        verdict = ("neither Jacobian fell" + (f" (the {rose[0]} Jacobian rose)" if len(rose) == 1 else
                                              " (both rose)" if rose else "")
                   + ", so these pairs do not test whether lowering the Jacobian lowers the gap")
    return f"{head}: {jacobians}; {gap}: {verdict}."


def conclusion(effects: pd.DataFrame) -> list[str]:
    """One plain sentence per regularizer (the pooled rows of `intervention_effects`), e.g.
    "jacobian (n=12; λ=0.01, λ=0.1): the logit Jacobian fell 4.1x [3.2, 5.0] while the softmax
    Jacobian rose 1.3x [1.1, 1.5]; the loss gap changed by -0.05 [-0.09, -0.01] nats: lowering the
    logit Jacobian lowered the gap." A change counts only when its 95% CI excludes 0."""
    if effects is None or not len(effects):
        return []
    pooled = effects[effects["level"] == "regularizer"]
    return [conclusion_sentence(row) for _, row in pooled.iterrows()]
