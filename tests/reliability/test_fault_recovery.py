"""Faults during a sweep on the package's two-node cluster: a worker or a whole node killed mid-trial,
junk in the results directory, training that diverges. Whatever happens, every planned trial ends with
exactly one complete record, and the analysis reads them all without a warning."""

from __future__ import annotations

import os
import shutil
import warnings

import psutil
import pyarrow.parquet as pq
from ray_cluster import node_args

from .helpers import EXIT_TIMEOUT_S, RECORD_NAME, Saboteur, alive, listing, planned_ids, records, sweep, wait_for
from analysis.load import load_trials
from study.records import completed_trial_ids

# Trials that run a fixed 300 steps (accuracy is checked only at the end). A kill lands mid-trial because the
# test holds the trials it kills (the `faults` fixture), not because they are slow.
SLOW = ("--set", "max_steps=300", "--set", "eval_every=300", "--set", "width=16", "--set", "depth=3")


def assert_exactly_once(out, expected: set[str]) -> None:
    """One complete record per planned trial in each table, no other visible file, the analysis agrees."""
    for table in ("trials", "points", "trajectories"):
        names = [n for n in listing(out / table) if not n.startswith(".")]
        assert names == sorted(f"{t}.parquet" for t in expected) and all(map(RECORD_NAME.match, names)), table
        for name in names:
            pq.read_metadata(out / table / name)  # complete files only
    frame = records(out)
    assert len(frame) == len(expected) and set(frame.trial_id) == expected


def in_flight(faults, n: int) -> list[dict]:
    """The first `n` trial attempts to start (held by `faults`), once n have started."""
    return wait_for(lambda: faults.started()[:n] if len(faults.started()) >= n else None, 120,
                    f"{n} trials in flight")


def test_a_worker_killed_mid_trial_is_retried_and_recorded_once(cluster, tmp_path, faults):
    out = tmp_path / "out"
    argv = ("smoke", "--out", str(out), "--num-samples", "2", "--seed", "11", *SLOW)
    faults.hold(free=0)  # both trials wait in their workers until released

    def kill_a_busy_worker() -> psutil.Process:
        victim = psutil.Process(in_flight(faults, 2)[0]["pid"])  # alive: held in its trial
        assert not completed_trial_ids(str(out))  # none recorded: both held
        victim.kill()
        gone, _ = psutil.wait_procs([victim], timeout=60)
        assert gone, "the killed worker did not exit"
        faults.release()
        return victim

    saboteur = Saboteur(kill_a_busy_worker)
    _, report, counts = sweep(*argv)
    killed = saboteur.check()
    expected = planned_ids("smoke", 2, 11, SLOW[1::2])
    assert report.missing == 0 and sum(counts.values()) == 2 and "error" not in counts
    assert_exactly_once(out, expected)
    workers = set(records(out)["env.worker"])
    assert not any(w.endswith(f":{killed.pid}") for w in workers)  # the killed attempt wrote nothing
    assert len(faults.started()) == 3  # two attempts, then the killed trial's retry
    assert not alive(killed)  # start time checked too: a reused pid is not this process


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


def test_a_node_lost_mid_sweep_leaves_the_rest_to_the_other(cluster, tmp_path, faults):
    """Runs last in this module: it removes the second node, and adds a fresh one back."""
    out = tmp_path / "out"
    argv = ("smoke", "--out", str(out), "--num-samples", "4", "--seed", "13", *SLOW)
    (node,) = cluster.worker_nodes
    lost_id, head_id = node.node_id, cluster.head_node.node_id
    faults.hold(free=0)
    held: list[psutil.Process] = []

    def remove_the_node_mid_trial() -> None:
        # Two held trials on two one-CPU nodes: one of them runs on the second node.
        (there,) = [m for m in in_flight(faults, 2) if m["node"] == lost_id]
        held.append(psutil.Process(there["pid"]))
        assert not completed_trial_ids(str(out))
        cluster.remove_node(node, allow_graceful=False)
        faults.release()

    saboteur = Saboteur(remove_the_node_mid_trial)
    try:
        _, report, counts = sweep(*argv)
        saboteur.check()
        expected = planned_ids("smoke", 4, 13, SLOW[1::2])
        assert report.missing == 0 and sum(counts.values()) == 4 and "error" not in counts
        assert_exactly_once(out, expected)
        assert set(records(out)["env.node"]) == {head_id}  # nothing finished on the lost node before it went
        # Its trial's worker goes with the node: killed with its raylet, maybe not reaped (a zombie) yet.
        wait_for(lambda: not alive(held[0]), EXIT_TIMEOUT_S, "the lost node's trial worker to exit", every=0.5)
    finally:
        cluster.add_node(**node_args())
        cluster.wait_for_nodes()
