import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch

from study import TrialConfig, load_dataset, run_trial
from study.config import ConfigError
from study.schema import table_schema
from study.resources import ResourceError, check_memory, estimate_bytes, resolve_device

FAST = dict(dataset="digits", n_train=200, n_test=100, width=32, depth=3, max_steps=400, eval_every=50,
            lr=0.01, n_trajectories=1, trajectory_points=8)


@pytest.fixture(scope="module")
def result():
    return run_trial(TrialConfig(**FAST))


def test_record_has_the_contract_columns(result):
    rec = result.record
    for col in ("trial_id", "status", "train.steps", "train.loss", "train.accuracy", "test.loss", "test.accuracy",
                "gap.loss", "gap.accuracy", "measure.jacobian_test", "measure.jacobian_train",
                "measure.logit_jacobian_sq_test", "measure.transitions_test", "measure.transitions_train",
                "time.train_s", "time.measure_s"):
        assert col in rec, col
    for field in TrialConfig.field_names():
        assert f"hp.{field}" in rec
    assert rec["status"] == "ok" and rec["train.accuracy"] == 1.0
    assert rec["gap.loss"] == pytest.approx(rec["test.loss"] - rec["train.loss"])
    assert rec["trial_id"] == TrialConfig(**FAST).trial_id


def test_points_agree_with_the_trial_row(result):
    pts = result.points
    assert set(pts.columns) >= {"trial_id", "split", "index", "label", "loss", "correct", "jacobian",
                                "logit_jacobian", "jacobian_y"}
    assert len(pts) == 300
    test = pts[pts.split == "test"]
    assert test.jacobian.mean() == pytest.approx(result.record["measure.jacobian_test"])
    assert test.loss.mean() == pytest.approx(result.record["test.loss"])
    assert (test.jacobian_y <= test.jacobian + 1e-12).all()  # a row's norm is at most the Frobenius norm
    assert pts[pts.split == "train"].correct.all()


def test_same_config_same_numbers(result):
    again = run_trial(TrialConfig(**FAST))
    for key in ("train.steps", "test.loss", "measure.jacobian_test", "measure.transitions_test"):
        assert again.record[key] == result.record[key]
    pd.testing.assert_frame_equal(again.points, result.points)


def test_model_and_load_dataset_reproduce_the_points(result):
    data = load_dataset(result.config)
    import torch
    with torch.no_grad():
        loss = torch.nn.functional.cross_entropy(result.model(data.x_test).double(), data.y_test, reduction="none")
    test = result.points[result.points.split == "test"].sort_values("index")
    assert loss.numpy() == pytest.approx(test.loss.to_numpy(), rel=1e-6)


def test_write_produces_three_atomic_parquet_tables(result, tmp_path):
    result.write(str(tmp_path))
    for table in ("trials", "points", "trajectories"):
        path = tmp_path / table / f"{result.trial_id}.parquet"
        assert path.exists()
        assert pq.read_schema(path).names == table_schema(table).names
    assert not [p for p in tmp_path.rglob(".tmp-*")]
    row = pq.read_table(tmp_path / "trials" / f"{result.trial_id}.parquet").to_pylist()[0]
    assert row["status"] == "ok" and row["hp.width"] == 32
    assert (row["env.threads"], row["env.pack_size"]) == (torch.get_num_threads(), 1)  # provenance of the rounding
    assert not set(result.record) - set(table_schema("trials").names)  # nothing the record holds is dropped


def test_diverged_trial_has_empty_measures():
    res = run_trial(TrialConfig(dataset="synthetic", n_train=100, optimizer="sgd", lr=1e6, init_scale=8.0,
                                depth=4, max_steps=100, eval_every=10))
    assert res.status == "diverged" and res.record.get("measure.jacobian_test") is None and res.points.empty


def test_memory_estimate_refuses_huge_configs():
    huge = TrialConfig(dataset="cifar100", width=65536, depth=65, n_train=50000)
    assert estimate_bytes(huge) > 1e12
    with pytest.raises(ResourceError, match=r"needs about \d+"):
        check_memory(huge, resolve_device("cpu"))
    with pytest.raises(ResourceError):
        run_trial(huge)
    check_memory(TrialConfig(), resolve_device("cpu"))


def test_unknown_device_and_missing_cuda():
    with pytest.raises(ConfigError, match="unknown device"):
        resolve_device("tpu7")
    import torch
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA device"):
            resolve_device("cuda")
