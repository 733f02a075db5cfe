"""Records do not change under refactoring: fixed configs through run_trial and run_packed give the trial ids
and values stored in tests/golden/records.json (floats to 1e-6).

The golden file was written by this module against the code before the one-place redesign of study/ (2026-12-01);
the columns model.init_sha256 and version.<measure> were added to it on 2026-12-02, then the columns of the
measures Jiang et al. ranked (init_distance, inverse_margin, fisher_rao, the PAC-Bayes flatness pair), every
other value unchanged:

    .venv/bin/python tests/test_records_unchanged.py --write

Rewrite it only with a change that is meant to change numbers, and bump study.config.ALGORITHM_VERSION with
it (the ids change then too). A table is compared through per-column fingerprints (sum, sum of squares,
sum weighted by row number, min, max), which a changed, dropped or reordered value moves.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

GOLDEN = Path(__file__).parent / "golden" / "records.json"
SMALL = {"n_train": 120, "n_test": 80, "width": 24, "depth": 3, "eval_every": 25, "n_trajectories": 1,
         "trajectory_points": 8, "transition_samples": 1024}
ALONE = {
    "relu-adam-synthetic": {"dataset": "synthetic", "nonlinearity": "relu", "optimizer": "adam", "lr": 0.01,
                            "max_steps": 150, "batch_size": 32},
    "tanh-momentum-digits": {"dataset": "digits", "nonlinearity": "tanh", "optimizer": "momentum", "lr": 0.05,
                             "max_steps": 150, "batch_size": 32},
    "hardtanh-lbfgs-synthetic": {"dataset": "synthetic", "nonlinearity": "hardtanh", "optimizer": "lbfgs",
                                 "lr": 0.5, "max_steps": 20},
    "relu6-augment-jacobian_proj-digits": {"dataset": "digits", "nonlinearity": "relu6", "optimizer": "adam",
                                           "lr": 0.01, "max_steps": 100, "batch_size": 32, "augment": True,
                                           "regularizer": "jacobian_proj", "reg_strength": 0.01,
                                           "reg_projections": 2},
}
PACK = {"dataset": "synthetic", "nonlinearity": "relu", "optimizer": "sgd", "lr": 0.1, "max_steps": 100,
        "batch_size": 32}
PACK_VARIANTS = ({"seed": 0}, {"seed": 1, "lr": 0.05}, {"seed": 2, "init_scale": 2.0, "random_labels": 1.0})
SKIPPED = ("time.", "env.", "created_at")


def configs():
    from study.config import TrialConfig

    alone = {name: TrialConfig(**{**SMALL, **values}) for name, values in ALONE.items()}
    pack = [TrialConfig(**{**SMALL, **PACK, **variant}) for variant in PACK_VARIANTS]
    return alone, pack


def _value(value):
    if isinstance(value, (bool, np.bool_)) or value is None or isinstance(value, str):
        return value if not isinstance(value, np.bool_) else bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    return float(value)


def fingerprint(table: pd.DataFrame) -> dict:
    """Per column: numbers -> [sum, sum of squares, sum of (row + 1) x value, min, max] (NaN-free columns);
    text -> the sorted distinct values; plus the row count."""
    out: dict = {"rows": len(table)}
    weights = np.arange(1, len(table) + 1, dtype=np.float64)
    for column in table.columns:
        values = table[column]
        if pd.api.types.is_bool_dtype(values) or pd.api.types.is_numeric_dtype(values):
            x = values.to_numpy(dtype=np.float64)
            finite = np.isfinite(x)
            x = np.where(finite, x, 0.0)
            out[column] = [float(x.sum()), float((x * x).sum()), float((weights * x).sum()),
                           float(x.min()) if len(x) else 0.0, float(x.max()) if len(x) else 0.0,
                           int((~finite).sum())]
        else:
            out[column] = sorted(map(str, values.dropna().unique()))
    return out


def summary(result) -> dict:
    record = {k: _value(v) for k, v in sorted(result.record.items()) if not k.startswith(SKIPPED)}
    return {"trial_id": result.trial_id, "record": record, "points": fingerprint(result.points),
            "trajectories": fingerprint(result.trajectories)}


def compute() -> dict:
    import torch

    from study.packed import run_packed
    from study.trial import run_trial

    torch.set_num_threads(1)
    alone, pack = configs()
    out = {name: summary(run_trial(cfg, threads=1, download=False)) for name, cfg in alone.items()}
    for i, result in enumerate(run_packed(pack, threads=1, download=False)):
        out[f"packed-sgd-{i}"] = summary(result)
    return out


def _close(got, want, where: str) -> None:
    if isinstance(want, float):
        assert isinstance(got, float), where
        if math.isnan(want):
            assert math.isnan(got), where
        else:
            assert got == pytest.approx(want, rel=1e-6, abs=1e-6), where
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), where
        for i, (a, b) in enumerate(zip(got, want)):
            _close(a, b, f"{where}[{i}]")
    else:
        assert got == want, where


@pytest.fixture(scope="module")
def computed() -> dict:
    return compute()


@pytest.mark.parametrize("name", [*ALONE, *(f"packed-sgd-{i}" for i in range(len(PACK_VARIANTS)))])
def test_records_equal_the_golden_ones(computed, name):
    """Same trial id; every record value and every table fingerprint equal to the golden file's (1e-6)."""
    want, got = json.loads(GOLDEN.read_text())[name], computed[name]
    assert got["trial_id"] == want["trial_id"]
    assert sorted(got["record"]) == sorted(want["record"])
    for key, value in want["record"].items():
        _close(got["record"][key], value, f"record {key}")
    for table in ("points", "trajectories"):
        assert sorted(got[table]) == sorted(want[table]), table
        for column, value in want[table].items():
            _close(got[table][column], value, f"{table}.{column}")


def test_the_golden_configs_cover_what_the_redesign_touches(computed):
    """Fitted and unfitted trials, exact and sampled transition counts, a regularizer, augmentation, a pack."""
    records = [c["record"] for c in computed.values()]
    assert {r["status"] for r in records} >= {"ok"}
    methods = {m for c in computed.values() for m in c["trajectories"]["method"]}
    assert methods >= {"exact", "sampled"}


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python tests/test_records_unchanged.py --write")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    GOLDEN.parent.mkdir(exist_ok=True)
    data = compute()
    temporary = GOLDEN.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    temporary.replace(GOLDEN)
    print(f"wrote {GOLDEN}: " + ", ".join(f"{k} {v['record']['status']}" for k, v in data.items()))
