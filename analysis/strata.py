"""What the statistics are computed against, and on which nets: the gap targets and the label strata.

Targets. All nets of the study are trained to 100% training accuracy, so their test error equals the
accuracy gap `gap.accuracy` (train accuracy - test accuracy): the quantity Novak et al. 2018
("Sensitivity and Generalization in Neural Networks") correlate the Jacobian norm with. The loss gap
`gap.loss` (test - train cross-entropy, nats) is the other target; `sensitivity analyze --gap` picks
which one the headline and figures 1 and 4 use (GAPS: "accuracy" -> gap.accuracy, "loss" -> gap.loss).

Strata. Nets trained on random labels (`hp.random_labels` > 0) have both a larger Jacobian norm and
a larger gap than nets trained on the true labels (`hp.random_labels` == 0), so a correlation pooled
over both partly measures "random labels or not". LABELS names the strata: "all" (every net),
"true" (hp.random_labels == 0) and "random" (hp.random_labels > 0). A trial whose value is missing
(or a table without the column) is in "all" only: its labels are unknown.
"""

from __future__ import annotations

from typing import Iterable

import pandas as pd

LABELS_COLUMN = "hp.random_labels"
LABELS = ("all", "true", "random")
TARGETS = ("gap.accuracy", "gap.loss")
GAPS = {"accuracy": "gap.accuracy", "loss": "gap.loss"}  # `--gap` choice -> target column
GAP_MEANINGS = {"gap.accuracy": "train - test accuracy, the test error of nets that fit their training set",
                "gap.loss": "test - train cross-entropy, nats"}


def gap_column(gap: str) -> str:
    """The target column of a `--gap` choice: "accuracy" -> "gap.accuracy", "loss" -> "gap.loss"
    (the column names themselves are accepted too); ValueError for anything else."""
    if gap in GAPS:
        return GAPS[gap]
    if gap in GAPS.values():
        return gap
    raise ValueError(f"gap must be one of {', '.join(GAPS)} (or {', '.join(GAPS.values())}), got {gap!r}")


def label_mask(df: pd.DataFrame, labels: str) -> pd.Series:
    """Boolean mask of the nets of stratum `labels` ("all", "true" or "random"; see the module docstring)."""
    if labels == "all":
        return pd.Series(True, index=df.index)
    if labels not in LABELS:
        raise ValueError(f"labels must be one of {', '.join(LABELS)}, got {labels!r}")
    if LABELS_COLUMN not in df.columns:  # unknown labels: in "all" only
        return pd.Series(False, index=df.index)
    fraction = pd.to_numeric(df[LABELS_COLUMN], errors="coerce").astype(float)
    mask = fraction == 0 if labels == "true" else fraction > 0
    return mask.fillna(False).astype(bool)


def label_strata(df: pd.DataFrame, labels: Iterable[str] = LABELS) -> list[tuple[str, pd.DataFrame]]:
    """(stratum name, its rows of `df`) for each of `labels`, in that order; a stratum may be empty."""
    return [(name, df.loc[label_mask(df, name)]) for name in labels]
