"""The hyperparameter axes of a trials table: which `hp.*` columns vary, and which of them are one axis.

A sweep's axes are its varying `hp.*` columns, the seed aside (it is the repetition, not a hyperparameter a
measure should track; Jiang et al. 2020 average over seeds). Two columns that determine each other on the
rows (a one-to-one map between their values: the grid preset's learning rate, linked to its optimizer, takes
one value per optimizer) are one axis: the protocols that compare trials differing "in one axis only"
(granulated Kendall Psi, the CMI score, the robust sign error) would otherwise find no two trials that differ
in the optimizer alone, since the learning rate always changes with it. Such a class of columns is named by
its first column in the table's order and grouped on together.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

SEED_AXIS = "hp.seed"


def level_codes(column: pd.Series) -> np.ndarray:
    """Integer codes of a column's values, a missing value being a level of its own (as groupby(dropna=False))."""
    return np.asarray(column.factorize(use_na_sentinel=False)[0])


def groups_of(codes: list[np.ndarray], n: int) -> list[np.ndarray]:
    """Row numbers of each group of equal values over `codes`, groups in order of first appearance
    (groupby(sort=False)), rows in order within a group; one group of every row if there are no codes."""
    if not codes:
        return [np.arange(n)] if n else []
    _, first, inverse = np.unique(np.column_stack(codes), axis=0, return_index=True, return_inverse=True)
    inverse = inverse.ravel()
    rows = np.split(np.argsort(inverse, kind="stable"), np.cumsum(np.bincount(inverse))[:-1])
    return [rows[g] for g in np.argsort(first, kind="stable")]


def _one_to_one(a: np.ndarray, b: np.ndarray) -> bool:
    pairs = np.unique(np.column_stack([a, b]), axis=0)
    return len(pairs) == len(np.unique(a)) == len(np.unique(b))


def linked_classes(codes: dict[str, np.ndarray]) -> dict[str, list[str]]:
    """{first column of a class: the class}, over columns given as integer codes (in order), a class being the
    columns that determine each other one-to-one on these rows."""
    classes: dict[str, list[str]] = {}
    for column, values in codes.items():
        home = next((first for first in classes if _one_to_one(codes[first], values)), None)
        classes.setdefault(column if home is None else home, []).append(column)
    return classes


def varying(df: pd.DataFrame) -> list[str]:
    """The `hp.*` columns of `df` with more than one value (a missing value counts as one), the seed included."""
    return [c for c in df.columns if c.startswith("hp.") and df[c].nunique(dropna=False) > 1]


def axis_classes(df: pd.DataFrame, include_seed: bool = False) -> dict[str, list[str]]:
    """{axis: its columns}: the varying hp.* columns of `df` merged into classes (linked_classes)."""
    columns = [c for c in varying(df) if include_seed or c != SEED_AXIS]
    return linked_classes({c: level_codes(df[c]) for c in columns})


def swept_axes(df: pd.DataFrame, include_seed: bool = False) -> list[str]:
    """The axes of `df` (the module docstring): one column per class of varying hp.* columns, hp.seed only if
    `include_seed`. Trials that differ in seed still fall in different groups in granulated_kendall."""
    return list(axis_classes(df, include_seed))
