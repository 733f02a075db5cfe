"""Comparing two TrialResults of the same config (packed vs alone, cuda vs CPU): one function for the tests."""

from __future__ import annotations

from typing import Callable

import pandas as pd
import pytest


def exact_int(a: int, b: int) -> bool:
    return a == b


def assert_same_trial(got, want, rel: float = 1e-4, ints: Callable[[int, int], bool] = exact_int,
                      ignore: tuple[str, ...] = ("time.", "created_at")) -> None:
    """Records, points and trajectories equal: floats to `rel`, integers by `ints` (exact unless given), other
    values exactly; record keys starting with an `ignore` prefix (timings, creation time) are skipped.

    float32 training agrees to about 1e-7 relative per weight; a small per-point Jacobian norm loses digits to
    the cancellation in p (e_y - p), so per-point columns are compared to `rel` times the column's largest value."""
    assert got.config == want.config and set(got.record) == set(want.record)
    for key, value in want.record.items():
        if key.startswith(ignore):
            continue
        if isinstance(value, float):
            assert got.record[key] == pytest.approx(value, rel=rel, abs=1e-6, nan_ok=True), key
        elif isinstance(value, int) and not isinstance(value, bool):
            assert ints(got.record[key], value), (key, got.record[key], value)
        else:
            assert got.record[key] == value, key
    for table in ("points", "trajectories"):
        a, b = getattr(got, table), getattr(want, table)
        assert list(a.columns) == list(b.columns) and len(a) == len(b), table
        for column in a.columns:
            if pd.api.types.is_float_dtype(b[column]):
                scale = float(b[column].abs().max()) if len(b) else 0.0
                assert a[column].to_numpy() == pytest.approx(b[column].to_numpy(), rel=rel, abs=rel * scale + 1e-7), \
                    (table, column)
            elif pd.api.types.is_integer_dtype(b[column]) and column != "index":
                assert all(ints(int(x), int(y)) for x, y in zip(a[column], b[column])), (table, column)
            else:
                assert a[column].tolist() == b[column].tolist(), (table, column)
