"""--pack S: compatible configs trained together, one Tune trial a pack, the same records as without."""

from __future__ import annotations

import pandas as pd
import pytest

from analysis.load import load_points
from sweeps.command import main
from cli_runs import sweep_args
from sweep_helpers import records
from sweeps.cli import sweep
from sweeps.presets import SMOKE
from sweeps.units import chunks as _chunks, units
from sweeps.sampling import parse_overrides, sample

# Pinning the architecture and optimizer leaves seed, init_scale and random_labels drawn: all free in a pack.
PACKABLE = ["--set", "width=8", "--set", "depth=2", "--set", "nonlinearity=relu", "--set", "optimizer=adam"]
VOLATILE = ("time.", "env.", "created_at", "sweep.")  # how and when it ran, not what it computed


def test_units_group_compatible_trials_and_chunks_count_trials():
    planned = list(sample(SMOKE, parse_overrides(["width=8", "depth=2", "optimizer=adam,lbfgs"]), 0, 10).trials)
    groups = units(planned, 4)
    assert sorted(t.trial_id for g in groups for t in g) == sorted(t.trial_id for t in planned)
    for group in groups:
        assert len(group) <= 4 and len({(t.config.optimizer, t.config.nonlinearity) for t in group}) == 1
        assert len(group) == 1 or group[0].config.optimizer == "adam"  # L-BFGS does not pack
    assert units(planned, 1) == [[t] for t in planned]
    assert [sum(map(len, c)) for c in _chunks([[1, 2, 3], [4], [5, 6], [7, 8, 9, 10]], 4)] == [4, 2, 4]


def test_pack_below_2_is_refused(tmp_path, capsys):
    assert main(["sweep", "smoke", "--out", str(tmp_path / "o"), "--pack", "1"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "--pack must be at least 2" in line and not (tmp_path / "o").exists()


def assert_same_numbers(got: pd.DataFrame, want: pd.DataFrame, rel: float = 1e-4) -> None:
    assert list(got.index) == list(want.index)
    for column in want.columns:
        if column.startswith(VOLATILE):
            continue
        if pd.api.types.is_float_dtype(want[column]):
            scale = float(want[column].abs().max()) if want[column].notna().any() else 0.0
            assert got[column].to_numpy() == pytest.approx(want[column].to_numpy(), rel=rel, abs=rel * scale + 1e-7,
                                                           nan_ok=True), column
        else:
            assert got[column].tolist() == want[column].tolist(), column


def test_a_packed_sweep_writes_the_records_of_the_unpacked_one(ray_cluster, tmp_path):
    argv = ["smoke", "--num-samples", "8", *PACKABLE]
    plain_dir, packed_dir = tmp_path / "plain", tmp_path / "packed"
    sweep(sweep_args(*argv, "--out", str(plain_dir)))
    plan, report, counts = sweep(sweep_args(*argv, "--out", str(packed_dir), "--pack", "4"))
    assert [len(u) for u in units(list(plan.sample.trials), 4)] == [4, 4]
    assert [c.trials for c in report.chunks] == [8] and sum(counts.values()) == 8 and report.missing == 0
    plain, packed = (records(d).set_index("trial_id").sort_index() for d in (plain_dir, packed_dir))
    assert len(packed) == 8 and packed["env.worker"].nunique() <= 2  # two Tune trials wrote the 8 records
    assert set(packed["env.pack_size"]) == {4} and set(plain["env.pack_size"]) == {1}
    assert_same_numbers(packed, plain)
    key = ["trial_id", "split", "index"]
    points = [load_points(str(d)).sort_values(key).set_index(key) for d in (plain_dir, packed_dir)]
    assert len(points[0]) == 8 * 128
    assert_same_numbers(points[1], points[0])

    # resume stays per trial: a rerun skips both packs; lost records are packed and run again, alone
    lost = sorted(packed.index)[:3]
    for trial_id in lost:
        for table in ("trials", "points", "trajectories"):
            (packed_dir / table / f"{trial_id}.parquet").unlink()
    _, again, _ = sweep(sweep_args(*argv, "--out", str(packed_dir), "--pack", "4"))
    assert again.skipped == 5 and [c.trials for c in again.chunks] == [3] and again.missing == 0
    assert_same_numbers(records(packed_dir).set_index("trial_id").sort_index(), plain)
    _, none, _ = sweep(sweep_args(*argv, "--out", str(packed_dir), "--pack", "4"))
    assert none.chunks == [] and none.skipped == 8
