"""Faults during a sweep on the package's two-node cluster: a worker or a whole node killed mid-trial,
junk in the results directory, training that diverges. Whatever happens, every planned trial ends with
exactly one complete record, and the analysis reads them all without a warning."""

from __future__ import annotations

import os
import shutil
import signal
import warnings

import psutil
import pyarrow.parquet as pq

from .helpers import RECORD_NAME, Saboteur, listing, planned_ids, records, sweep, trial_workers, wait_for
from analysis.load import load_trials
from study.records import completed_trial_ids

# Trials of ~1-3 s (a fixed 1500 steps: accuracy is checked only at the end), so a kill lands mid-trial.
SLOW = ("--set", "max_steps=1500", "--set", "eval_every=1500", "--set", "width=16", "--set", "depth=3")


def assert_exactly_once(out, expected: set[str]) -> None:
    """One complete record per planned trial in each table, no other visible file, the analysis agrees."""
    for table in ("trials", "points", "trajectories"):
        names = [n for n in listing(out / table) if not n.startswith(".")]
        assert names == sorted(f"{t}.parquet" for t in expected) and all(map(RECORD_NAME.match, names)), table
        for name in names:
            pq.read_metadata(out / table / name)  # complete files only
    frame = records(out)
    assert len(frame) == len(expected) and set(frame.trial_id) == expected


def test_a_worker_killed_mid_trial_is_retried_and_recorded_once(cluster, tmp_path):
    out = tmp_path / "out"
    argv = ("smoke", "--out", str(out), "--num-samples", "2", "--seed", "11", *SLOW)

    def both_in_flight():
        busy = trial_workers()
        return busy if len(busy) == 2 and not completed_trial_ids(str(out)) else None

    def kill_a_busy_worker() -> int:
        victim = wait_for(both_in_flight, 60, "two trials in flight, none recorded")[0]
        victim.send_signal(signal.SIGKILL)
        return victim.pid

    saboteur = Saboteur(kill_a_busy_worker)
    _, report, counts = sweep(*argv)
    killed = saboteur.check()
    expected = planned_ids("smoke", 2, 11, SLOW[1::2])
    assert report.missing == 0 and sum(counts.values()) == 2 and "error" not in counts
    assert_exactly_once(out, expected)
    workers = set(records(out)["env.worker"])
    assert not any(w.endswith(f":{killed}") for w in workers)  # the killed attempt wrote nothing
    assert not psutil.pid_exists(killed) or psutil.Process(killed).status() == psutil.STATUS_ZOMBIE


def test_junk_in_the_results_directory_does_not_stop_or_skew_a_rerun(cluster, tmp_path):
    out = tmp_path / "out"
    sweep("smoke", "--out", str(out), "--num-samples", "4", "--seed", "12")  # the first 4 of the 6 below
    trials = out / "trials"
    first = sorted(completed_trial_ids(str(out)))
    assert len(first) == 4
    # A record truncated under its own name (an interrupted copy), random bytes, a CSV and a text file
    # under foreign names, a directory, and a hidden temp file of a killed writer.
    victim = trials / f"{first[0]}.parquet"
    victim.write_bytes(victim.read_bytes()[:200])
    (trials / "0123456789abcdef.parquet").write_bytes(os.urandom(500))
    (trials / "export.parquet").write_text("trial_id,status\nx,ok\n")
    (trials / "notes.txt").write_text("keep")
    (trials / "old").mkdir()
    (trials / ".tmp-deadbeef.parquet").write_bytes(b"PAR1")
    logged: list[str] = []
    _, report, counts = sweep("smoke", "--out", str(out), "--num-samples", "6", "--seed", "12", log=logged.append)
    expected = planned_ids("smoke", 6, 12)
    assert report.skipped == 3 and sum(c.trials for c in report.chunks) == 3 and report.missing == 0
    assert sum(counts.values()) == 6 and set(counts) <= {"ok", "not_fit", "diverged"}
    assert any("unreadable" in line and first[0] in line for line in logged), logged
    pq.read_metadata(victim)  # run again and replaced atomically
    assert "6 of 6 trials recorded" in logged[-1]
    # The analysis names each foreign file and reads the 6 records, each once.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        frame = load_trials(str(out))
    named = " ".join(str(w.message) for w in caught)
    assert len(caught) == 3 and all(n in named for n in ("0123456789abcdef.parquet", "export.parquet", "notes.txt"))
    assert len(frame) == 6 and set(frame.trial_id) == expected
    for junk in ("0123456789abcdef.parquet", "export.parquet", "notes.txt"):
        os.remove(trials / junk)
    shutil.rmtree(trials / "old")
    assert_exactly_once(out, expected)


def test_diverging_trials_are_recorded_as_diverged_and_the_sweep_goes_on(cluster, tmp_path):
    out = tmp_path / "out"
    sets = ("lr=1e6,0.01", "optimizer=sgd,adam", "nonlinearity=relu")
    argv = ["smoke", "--out", str(out), "--num-samples", "8"]
    for s in sets:
        argv += ["--set", s]
    _, report, counts = sweep(*argv)
    frame = records(out).set_index("trial_id")
    assert len(frame) == 8 and report.missing == 0 and "error" not in counts
    diverged = frame[frame.status == "diverged"]
    others = frame[frame.status != "diverged"]
    assert len(diverged) >= 1 and len(others) >= 1, frame.status.value_counts()
    assert ((diverged["hp.lr"] == 1e6) & (diverged["hp.optimizer"] == "sgd")).all()
    assert diverged["error"].str.contains("non-finite").all()
    measures = [c for c in frame.columns if c.startswith("measure.")]
    assert diverged[measures].isna().all().all()  # measures of a diverged net are left empty
    assert others["measure.jacobian_test"].notna().all() and set(others.status) <= {"ok", "not_fit"}
    points = pq.read_table(out / "points" / f"{diverged.index[0]}.parquet")
    assert points.num_rows == 0  # no per-point measures either


def test_a_node_lost_mid_sweep_leaves_the_rest_to_the_other(cluster, tmp_path):
    """Runs last in this module: it removes the second node, and adds a fresh one back."""
    from ray._private import ray_constants

    out = tmp_path / "out"
    argv = ("smoke", "--out", str(out), "--num-samples", "4", "--seed", "13", *SLOW)
    (node,) = cluster.worker_nodes
    raylet = psutil.Process(node.all_processes[ray_constants.PROCESS_TYPE_RAYLET][0].process.pid)
    lost_id = node.node_id

    def remove_the_node_mid_trial() -> None:
        wait_for(lambda: trial_workers(raylet), 90, "a trial in flight on the second node")
        cluster.remove_node(node, allow_graceful=False)

    saboteur = Saboteur(remove_the_node_mid_trial)
    try:
        _, report, counts = sweep(*argv)
        saboteur.check()
        expected = planned_ids("smoke", 4, 13, SLOW[1::2])
        assert report.missing == 0 and sum(counts.values()) == 4 and "error" not in counts
        assert_exactly_once(out, expected)
        nodes = set(records(out)["env.node"])
        assert cluster.head_node.node_id in nodes and nodes <= {cluster.head_node.node_id, lost_id}
        assert not raylet.is_running()
    finally:
        cluster.add_node(num_cpus=1, object_store_memory=96 * 2 ** 20)
        cluster.wait_for_nodes()
