"""study.records (where records live, atomic writes, the index of complete trials) and study.schema (the
tables' columns), checked on a local directory; tests/sweeps/test_object_store.py covers s3://."""

from __future__ import annotations

import math
import os

import pandas as pd
import pyarrow.parquet as pq
import pytest

from study.config import ConfigError, TrialConfig
from study.records import (check_writable, completed_trial_ids, record_path, unreadable_records, write_atomic,
                           write_trial)
from study.schema import config_from_record, hp_record, table_schema, to_table


def test_record_path_names_every_table_s_file_the_same_way():
    assert record_path("/r/", "points", "abc") == "/r/points/abc.parquet"
    assert record_path("", "trials", "abc") == "trials/abc.parquet"


def test_a_failing_write_leaves_neither_the_file_nor_a_temporary(tmp_path):
    def broken(sink):
        sink.write(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomic(str(tmp_path), "trials/x.parquet", broken)
    assert os.listdir(tmp_path / "trials") == []
    write_atomic(str(tmp_path), "trials/x.parquet", lambda sink: sink.write(b"old"))
    with pytest.raises(OSError):
        write_atomic(str(tmp_path), "trials/x.parquet", broken)
    assert (tmp_path / "trials" / "x.parquet").read_bytes() == b"old"  # the previous file stays whole
    assert os.listdir(tmp_path / "trials") == ["x.parquet"]


def test_complete_trials_are_those_with_a_trials_file_and_unreadable_ones_are_found(tmp_path):
    cfg = TrialConfig(dataset="synthetic")
    record = {"trial_id": cfg.trial_id, "status": "ok", **hp_record(cfg)}
    write_trial(str(tmp_path), cfg.trial_id, record, pd.DataFrame(columns=["split", "index"]),
                pd.DataFrame(columns=["kind"]))
    trials = tmp_path / "trials"
    (trials / ".tmp-abc.parquet").write_bytes(b"partial")  # a temporary: not a record
    (trials / "_SUCCESS").write_bytes(b"")
    (trials / "notes.txt").write_text("x")
    (trials / "0123456789abcdef.parquet").write_bytes(b"PAR1 truncated")
    assert completed_trial_ids(str(tmp_path)) == {cfg.trial_id, "0123456789abcdef"}
    assert unreadable_records(str(tmp_path), completed_trial_ids(str(tmp_path))) == ["0123456789abcdef"]
    assert sorted(os.listdir(tmp_path)) == ["points", "trajectories", "trials"]
    assert pq.read_table(trials / f"{cfg.trial_id}.parquet").schema.equals(table_schema("trials"),
                                                                           check_metadata=False)
    assert completed_trial_ids(str(tmp_path / "nothing-here")) == set()


def test_check_writable_refuses_a_file_and_leaves_nothing(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(ConfigError, match="is a file, not a directory"):
        check_writable(str(tmp_path / "f"))
    with pytest.raises(ConfigError, match="cannot be created"):
        check_writable(str(tmp_path / "f" / "sub"))
    check_writable(str(tmp_path / "new" / "dir"))
    assert sorted(os.listdir(tmp_path)) == ["f"]  # nothing created by the check


def test_to_table_conforms_rows_to_the_schema():
    table = to_table("points", [{"split": "train", "index": 3, "loss": float("nan")}])
    assert table.schema.names == table_schema("points").names
    row = table.to_pylist()[0]
    assert row["loss"] is None and row["jacobian"] is None and row["index"] == 3  # NaN and missing: null
    with pytest.raises(ValueError, match="not in the points schema"):
        to_table("points", [{"split": "train", "index": 0, "colour": "red"}])
    with pytest.raises(ValueError, match="unknown table"):
        table_schema("weights")


def test_config_from_record_inverts_hp_record_and_fills_older_records_with_defaults():
    cfg = TrialConfig(dataset="digits", width=48, nonlinearity="tanh", lr=0.05)
    assert config_from_record(hp_record(cfg)) == cfg
    older = {k: v for k, v in hp_record(cfg).items() if k != "hp.init_scale"}
    older["hp.noise_std"] = math.nan  # a column an older record did not have, read as null
    assert config_from_record(older) == cfg
    assert config_from_record(pd.Series(hp_record(cfg)), width=64) == cfg.replace(width=64)


def test_every_column_of_the_three_tables_is_named_in_the_readme():
    """The README's table of tables is where a user looks a column up: a new measure's columns go there too
    (hp.<field> and version.<measure> are named as patterns)."""
    from pathlib import Path

    from study.schema import table_schema

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for table in ("trials", "points", "trajectories"):
        (row,) = [line for line in readme.splitlines() if line.startswith(f"| `{table}/<trial_id>.parquet`")]
        missing = [name for name in table_schema(table).names
                   if f"`{name}`" not in row and not name.startswith(("hp.", "version."))]
        assert not missing, f"README's {table} row lacks {missing}"
