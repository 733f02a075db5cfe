"""--out s3://bucket/prefix?endpoint_override=...: records written by the workers to a real S3 server
(moto's, on 127.0.0.1, with fake credentials that the driver forwards to the workers)."""

from __future__ import annotations

import json

import pytest

from study.records import completed_trial_ids, resolve
from cli_runs import cli, sweep_args
from sweep_helpers import free_port, records
from sweeps.cli import sweep
from sweeps.presets import SMOKE
from sweeps.sampling import sample

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
               "AWS_EC2_METADATA_DISABLED": "true"}


@pytest.fixture
def s3_endpoint(monkeypatch):
    from moto.server import ThreadedMotoServer

    for key, value in CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        import boto3

        boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1").create_bucket(
            Bucket="study")
        yield f"127.0.0.1:{port}"
    finally:
        server.stop()


def test_sweep_to_an_object_store_writes_every_record_and_a_rerun_skips_them(ray_cluster, s3_endpoint):
    uri = f"s3://study/sweeps-test?endpoint_override={s3_endpoint}&scheme=http&region=us-east-1"
    proc = cli("sweep", "smoke", "--out", uri, "--num-samples", "4", "--address", ray_cluster.address,
                   "--quiet", env=CREDENTIALS, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    expected = {t.trial_id for t in sample(SMOKE, {}, 0, 4).trials}
    assert completed_trial_ids(uri) == expected
    assert set(records(uri).trial_id) == expected
    fs, root = resolve(uri)
    from pyarrow.fs import FileSelector

    for table in ("points", "trajectories"):
        names = {i.base_name for i in fs.get_file_info(FileSelector(f"{root}/{table}"))}
        assert names == {f"{t}.parquet" for t in expected}
    (meta,) = fs.get_file_info(FileSelector(f"{root}/sweeps"))
    with fs.open_input_stream(meta.path) as stream:
        assert json.loads(stream.readall())["ended_at"]
    _, report, counts = sweep(sweep_args("smoke", "--out", uri, "--num-samples", "4"))
    assert report.chunks == [] and report.skipped == 4 and sum(counts.values()) == 4


    # the kept nets on the object store: loaded back, and measured again by `sensitivity measure`
    from analysis import load_model, load_trials
    from study.records import kept_trial_ids, measured_trial_ids

    assert kept_trial_ids(uri) == expected
    trials = load_trials(uri)
    assert load_model(uri, trials.iloc[0]).layers[0].in_features == 8
    proc = cli("measure", uri, "--measures", "gap", "--address", ray_cluster.address, "--quiet", env=CREDENTIALS,
               timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert measured_trial_ids(uri) == {("gap", 1): expected}
    again = load_trials(uri).set_index("trial_id")
    assert again["gap.loss"].to_dict() == pytest.approx(trials.set_index("trial_id")["gap.loss"].to_dict(), rel=1e-6)


def test_a_missing_bucket_is_refused_before_anything_starts(s3_endpoint, capsys):
    from sweeps.command import main

    uri = f"s3://no-such-bucket/x?endpoint_override={s3_endpoint}&scheme=http&region=us-east-1"
    assert main(["sweep", "smoke", "--out", uri]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "bucket 'no-such-bucket' does not exist" in line
