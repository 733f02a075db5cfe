"""End-to-end sweeps on the session's two-node Ray cluster (tests/sweeps/conftest.py)."""

from __future__ import annotations

import json
import os
import signal
import time

import pyarrow.parquet as pq

from study.records import completed_trial_ids
from cli_runs import cli, popen_cli, sweep_args
from sweep_helpers import records
from sweeps.cli import sweep
from sweeps.presets import PAIRS, SMOKE
from sweeps.sampling import parse_overrides, sample

TINY_PAIRS = ["--set", "dataset=synthetic", "--set", "n_train=64", "--set", "n_test=64", "--set", "width=8",
              "--set", "depth=2", "--set", "max_steps=40", "--set", "eval_every=20", "--set", "trajectory_points=8"]


def visible_files(directory) -> list[str]:
    return sorted(n for n in os.listdir(directory) if not n.startswith("."))


def test_smoke_sweep_writes_n_records_on_both_nodes_and_a_rerun_does_nothing(ray_cluster, tmp_path):
    import ray

    out = tmp_path / "out"
    plan, report, counts = sweep(sweep_args("smoke", "--out", str(out), "--num-samples", "12", "--chunk-size", "6",
                                            "--bundle", "1"))  # one trial a Tune trial: 2 chunks of 6
    expected = {t.trial_id for t in sample(SMOKE, {}, 0, 12).trials}
    frame = records(out)
    assert len(frame) == 12 and set(frame.trial_id) == expected == completed_trial_ids(str(out))
    assert len(report.chunks) == 2 and sum(c.trials for c in report.chunks) == 12 and report.missing == 0
    assert sum(counts.values()) == 12 and set(counts) <= {"ok", "not_fit", "diverged"}
    assert (frame["sweep.id"] == plan.sample.sweep_id).all() and frame["pair_id"].isna().all()
    nodes = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
    assert len(nodes) == 2 and set(frame["env.node"]) <= nodes  # each record names the node that ran it
    assert frame["env.worker"].nunique() < 12  # actors are reused across trials
    for table in ("points", "trajectories"):
        assert visible_files(out / table) == sorted(f"{t}.parquet" for t in expected)
    (meta_file,) = visible_files(out / "sweeps")
    meta = json.loads((out / "sweeps" / meta_file).read_text())
    assert meta["preset"] == "smoke" and meta["num_samples"] == 12 and meta["seed"] == 0
    assert sorted(meta["trial_ids"]) == sorted(expected) and meta["ended_at"] and meta["status_counts"] == counts

    mtimes = {p.name: p.stat().st_mtime_ns for p in (out / "trials").iterdir()}
    _, again, counts_again = sweep(sweep_args("smoke", "--out", str(out), "--num-samples", "12"))
    assert again.chunks == [] and again.skipped == 12 and counts_again == counts
    assert {p.name: p.stat().st_mtime_ns for p in (out / "trials").iterdir()} == mtimes
    assert len(visible_files(out / "sweeps")) == 2  # one metadata file per launch


def test_a_killed_worker_is_retried_and_a_hopeless_trial_gets_an_error_row(ray_cluster, tmp_path, faults):
    out = tmp_path / "out"
    planned = sample(SMOKE, {}, 3, 6).trials
    flaky, hopeless = planned[1].trial_id, planned[4].trial_id
    faults.crash(flaky, "once")  # its worker dies after training, just before writing; the retry runs on
    faults.crash(hopeless, "always")
    _, report, counts = sweep(sweep_args("smoke", "--out", str(out), "--num-samples", "6", "--seed", "3",
                                         "--max-failures", "1"))
    frame = records(out).set_index("trial_id")
    assert len(frame) == 6 and report.missing == 0 and counts["error"] == 1
    crashed_pid = faults.crashed_pid(flaky)
    assert crashed_pid and frame.loc[flaky, "status"] != "error"  # died once, then ran to the end
    assert not frame.loc[flaky, "env.worker"].endswith(f":{crashed_pid}")
    message = frame.loc[hopeless, "error"]
    assert frame.loc[hopeless, "status"] == "error" and message.startswith("failed 2 attempts; last: ")
    assert "actor" in message.lower() or "worker" in message.lower(), message
    assert frame.loc[hopeless, "hp.width"] == planned[4].config.width
    assert visible_files(out / "trials") == sorted(f"{t.trial_id}.parquet" for t in planned)


def test_kill_9_of_the_driver_then_rerun_gives_exactly_n_records(ray_cluster, tmp_path, faults):
    out, n, free = tmp_path / "out", 12, 4
    argv = ["smoke", "--out", str(out), "--num-samples", str(n), "--chunk-size", "6",
            "--address", ray_cluster.address]
    faults.hold(free=free)  # the first 4 trials to start run; the others wait in their workers
    driver = popen_cli("sweep", *argv)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and len(completed_trial_ids(str(out))) < free and driver.poll() is None:
        time.sleep(0.2)
    alive = driver.poll() is None
    os.kill(driver.pid, signal.SIGKILL)
    output = driver.communicate(timeout=60)[0]
    first = completed_trial_ids(str(out))
    assert alive and len(first) == free, output[-2000:]
    kept = {t: (out / "trials" / f"{t}.parquet").stat().st_mtime_ns for t in first}
    faults.clear()  # the same command again, nothing held (a held worker of the killed driver goes on too)
    proc = cli("sweep", *argv, timeout=400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    expected = {t.trial_id for t in sample(SMOKE, {}, 0, n).trials}
    frame = records(out)
    assert len(frame) == n and set(frame.trial_id) == expected and not frame.trial_id.duplicated().any()
    assert f"{free} already recorded" in proc.stdout and f"{n} of {n} trials recorded" in proc.stdout
    assert {t: (out / "trials" / f"{t}.parquet").stat().st_mtime_ns for t in first} == kept  # not rerun
    for table in ("trials", "points", "trajectories"):
        names = visible_files(out / table)
        assert names == sorted(f"{t}.parquet" for t in expected)
        for name in names:
            pq.read_metadata(out / table / name)  # complete files only


def test_pairs_preset_links_the_two_trials_of_each_pair(ray_cluster, tmp_path):
    out = tmp_path / "out"
    sweep(sweep_args("pairs", "--out", str(out), "--num-samples", "4", *TINY_PAIRS))
    frame = records(out)
    planned = sample(PAIRS, parse_overrides([a for a in TINY_PAIRS if a != "--set"]), 0, 4).trials
    assert len(frame) == 8 and set(frame.trial_id) == {t.trial_id for t in planned}
    for pair_id, pair in frame.groupby("pair_id"):
        assert len(pair) == 2 and pair["pair.factor"].nunique() == 1
        factor = pair["pair.factor"].iloc[0]
        assert pair[f"hp.{factor}"].nunique() == 2
        others = [c for c in frame.columns if c.startswith("hp.") and c != f"hp.{factor}"]
        assert (pair[others].nunique(dropna=False) == 1).all()
    assert frame.pair_id.nunique() == 4


def test_configs_that_do_not_fit_a_trials_memory_share_are_refused_up_front(ray_cluster, tmp_path, capsys):
    from sweeps.command import main

    out = tmp_path / "out"
    assert main(["sweep", "smoke", "--out", str(out), "--set", "width=200000", "--set", "depth=3"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "do not fit the memory of any node" in line and "width=200000" in line
    assert not out.exists()


def test_local_ray_start_progress_table_and_summary(tmp_path):
    """Without --address the CLI starts (and stops) its own Ray on 127.0.0.1."""
    out = tmp_path / "out"
    proc = cli("sweep", "smoke", "--out", str(out), "--num-samples", "4", "--max-concurrent", "2", timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for column in ("result", "train acc", "loss gap", "jacobian"):
        assert column in proc.stdout
    assert "4 of 4 trials recorded" in proc.stdout and "by status:" in proc.stdout and "trials/hour" in proc.stdout
    assert "127.0.0.1:" in proc.stdout  # the trials' location column: loopback only
    assert len(records(out)) == 4
