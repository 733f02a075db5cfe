import datetime as dt
import os
import warnings

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from analysis import filter_trials, load_points, load_trajectories, load_trials
from study.config import TrialConfig
from study.schema import hp_record, table_schema
from study.records import write_trial

T0 = pd.Timestamp("2024-05-01 12:00", tz="UTC")


def record(cfg: TrialConfig, status: str = "ok", minute: int = 0, **values) -> dict:
    rng = np.random.default_rng(cfg.seed + cfg.width)
    base = {**hp_record(cfg), "trial_id": cfg.trial_id, "schema_version": 1, "status": status,
            "train.accuracy": 1.0 if status == "ok" else 0.8, "gap.loss": float(rng.uniform(0.1, 2)),
            "measure.jacobian_test": float(rng.uniform(0.01, 1)), "created_at": T0 + dt.timedelta(minutes=minute)}
    base.update(values)
    return base


def points(cfg: TrialConfig, n: int = 3) -> pd.DataFrame:
    return pd.DataFrame({"trial_id": cfg.trial_id, "split": "test", "index": np.arange(n),
                         "loss": np.linspace(0.1, 1, n), "jacobian": np.linspace(1, 2, n)})


def trajectories(cfg: TrialConfig) -> pd.DataFrame:
    return pd.DataFrame({"trial_id": [cfg.trial_id], "kind": ["random"], "index": [0], "transitions": [cfg.width]})


def write_results(location, n: int = 4) -> list[TrialConfig]:
    configs = [TrialConfig(width=8 * (i + 1), seed=i) for i in range(n)]
    for i, cfg in enumerate(configs):
        write_trial(str(location), cfg.trial_id, record(cfg, minute=i), points(cfg), trajectories(cfg))
    return configs


def test_round_trip_of_the_three_tables(tmp_path):
    configs = write_results(tmp_path)
    trials = load_trials(str(tmp_path))
    assert list(trials.columns) == table_schema("trials").names
    assert sorted(trials["trial_id"]) == sorted(c.trial_id for c in configs)
    by_id = trials.set_index("trial_id")
    for cfg in configs:
        expected = record(cfg)
        assert by_id.loc[cfg.trial_id, "gap.loss"] == pytest.approx(expected["gap.loss"])
        assert by_id.loc[cfg.trial_id, "hp.width"] == cfg.width
    assert trials["test.loss"].isna().all()  # never written: null
    pts = load_points(str(tmp_path))
    assert len(pts) == 3 * len(configs) and list(pts.columns) == table_schema("points").names
    traj = load_trajectories(str(tmp_path))
    assert dict(zip(traj["trial_id"], traj["transitions"])) == {c.trial_id: c.width for c in configs}
    only = load_points(str(tmp_path), trial_ids=[configs[1].trial_id, "no-such-trial"])
    assert set(only["trial_id"]) == {configs[1].trial_id} and len(only) == 3
    serial = load_trials(str(tmp_path), max_workers=1)
    pd.testing.assert_frame_equal(serial, trials)


@pytest.mark.parametrize("make", ["missing", "empty"])
def test_missing_or_empty_directory_gives_empty_frame_with_schema_columns(tmp_path, make):
    if make == "empty":
        (tmp_path / "trials").mkdir()
    trials = load_trials(str(tmp_path))
    assert len(trials) == 0 and list(trials.columns) == table_schema("trials").names
    assert len(load_trajectories(str(tmp_path))) == 0


def test_bad_files_are_skipped_with_a_warning_naming_each(tmp_path):
    configs = write_results(tmp_path, n=3)
    directory = tmp_path / "trials"
    good = (directory / f"{configs[0].trial_id}.parquet").read_bytes()
    (directory / "corrupt.parquet").write_bytes(b"PAR1" + os.urandom(300) + b"PAR1")
    (directory / "truncated.parquet").write_bytes(good[: len(good) // 2])
    (directory / "foreign.parquet").write_text("trial_id,gap.loss\nabc,1.0\n")
    (directory / "notes.txt").write_text("not a table")
    pq.write_table(pa.table({"trial_id": ["x"], "gap.loss": ["not a number"]}), directory / "badtype.parquet")
    with pytest.warns(UserWarning) as caught:
        trials = load_trials(str(tmp_path))
    messages = "\n".join(str(w.message) for w in caught)
    for name in ("corrupt.parquet", "truncated.parquet", "foreign.parquet", "notes.txt", "badtype.parquet"):
        assert name in messages
    assert len(caught) == 5
    assert sorted(trials["trial_id"]) == sorted(c.trial_id for c in configs)


def test_hidden_and_temporary_files_are_ignored_silently(tmp_path):
    configs = write_results(tmp_path, n=2)
    directory = tmp_path / "trials"
    other = TrialConfig(width=99)
    valid = pa.Table.from_pylist([record(other)], schema=table_schema("trials"))
    pq.write_table(valid, directory / ".tmp-abc-123.parquet")  # a valid file: would add a row if read
    pq.write_table(valid, directory / "_staging.parquet")
    (directory / "_SUCCESS").write_text("")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        trials = load_trials(str(tmp_path))
    assert sorted(trials["trial_id"]) == sorted(c.trial_id for c in configs)


def test_old_schema_file_loads_with_nulls_and_extra_columns_dropped_or_kept(tmp_path):
    write_results(tmp_path, n=2)
    old = pa.table({"trial_id": ["old1"], "status": ["ok"], "hp.width": pa.array([16], pa.int32()),
                    "gap.loss": [0.5], "measure.retired": [7.0]})
    pq.write_table(old, tmp_path / "trials" / "old1.parquet")
    trials = load_trials(str(tmp_path))
    assert len(trials) == 3 and "measure.retired" not in trials.columns
    row = trials.set_index("trial_id").loc["old1"]
    assert row["hp.width"] == 16 and row["gap.loss"] == 0.5
    assert pd.isna(row["measure.jacobian_test"]) and pd.isna(row["created_at"])
    kept = load_trials(str(tmp_path), keep_extra=True).set_index("trial_id")
    assert kept.loc["old1", "measure.retired"] == 7.0
    assert kept["measure.retired"].isna().sum() == 2  # the newer files lack it


def test_duplicate_trial_ids_keep_the_newest_record(tmp_path):
    cfg = TrialConfig(width=8)
    schema = table_schema("trials")
    (tmp_path / "trials").mkdir()
    for name, minute, gap in (("a", 5, 1.0), ("b", 9, 2.0), ("c", 1, 3.0)):  # b is the newest
        table = pa.Table.from_pylist([record(cfg, minute=minute, **{"gap.loss": gap})], schema=schema)
        pq.write_table(table, tmp_path / "trials" / f"{name}.parquet")
    trials = load_trials(str(tmp_path))
    assert len(trials) == 1 and trials["gap.loss"].iloc[0] == 2.0


def test_filter_counts_every_reason():
    rows = []
    specs = ([("ok", {})] * 5 + [("not_fit", {"train.accuracy": 0.95})] * 2 + [("not_fit", {"train.accuracy": 0.5})]
             + [("error", {})] * 2 + [("diverged", {})] + [("ok", {"gap.loss": None})]
             + [("ok", {"measure.jacobian_test": float("nan")})] + [("ok", {"gap.loss": float("inf")})]
             + [(None, {})])
    for i, (status, values) in enumerate(specs):
        rows.append(record(TrialConfig(seed=i), status or "ok", **values) | {"status": status})
    trials = pd.DataFrame(rows)
    result = filter_trials(trials)
    assert len(result.kept) == 5 and (result.kept["status"] == "ok").all()
    assert dict(zip(result.dropped["reason"], result.dropped["count"])) == {
        "not_fit": 3, "error": 2, "diverged": 1, "missing:gap.loss": 2, "missing:measure.jacobian_test": 1,
        "status_missing": 1}
    lines = result.summary().splitlines()
    assert lines[0] == f"kept 5 of {len(specs)} trials"
    assert lines[1] == "not_fit: 3" and "error: 2" in lines and "diverged: 1" in lines
    relaxed = filter_trials(trials, min_train_accuracy=0.9)
    assert len(relaxed.kept) == 7  # the two not_fit trials at 0.95 join
    assert dict(zip(relaxed.dropped["reason"], relaxed.dropped["count"]))["train.accuracy<0.9"] == 1
    assert len(relaxed.kept) + relaxed.dropped["count"].sum() == len(specs)


def test_filter_on_an_empty_frame():
    result = filter_trials(load_trials("/nonexistent/results-dir"))
    assert len(result.kept) == 0 and len(result.dropped) == 0
    assert result.summary() == "kept 0 of 0 trials"


def test_pipeline_from_files_to_measure_table(tmp_path):
    from analysis.stats import measure_table

    configs = write_results(tmp_path, n=6)
    for i, status in enumerate(("not_fit", "error")):
        cfg = TrialConfig(width=4, seed=100 + i)
        write_trial(str(tmp_path), cfg.trial_id, record(cfg, status), pd.DataFrame(), pd.DataFrame())
    result = filter_trials(load_trials(str(tmp_path)))
    assert result.summary().splitlines() == ["kept 6 of 8 trials", "error: 1", "not_fit: 1"]
    table = measure_table(result.kept, n_boot=50)  # the records have no gap.accuracy, and true labels only
    assert set(table["measure"]) == {"measure.jacobian_test"}
    assert list(zip(table["target"], table["labels"], table["n"])) == [
        ("gap.accuracy", "all", 0), ("gap.accuracy", "true", 0), ("gap.accuracy", "random", 0),
        ("gap.loss", "all", len(configs)), ("gap.loss", "true", len(configs)), ("gap.loss", "random", 0)]
    assert -1 <= table["kendall"].iloc[3] <= 1
