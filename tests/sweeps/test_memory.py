"""A trial's memory (sweeps.memory): its reservation on Ray, the guard that stops a trial that outgrows it,
and an out-of-memory trial retried once, then recorded as an error row, while the sweep goes on."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from cli_runs import sweep_args
from sweep_helpers import records
from sweeps import memory
from sweeps import memory as memory_module
from sweeps.cli import sweep
from sweeps.presets import SMOKE
from sweeps.sampling import sample

MIB = 2 ** 20


def test_reservations_are_steps_of_a_ladder_at_least_the_estimate():
    steps = [memory.LADDER_BASE * memory.LADDER_RATIO ** k for k in range(12)]
    for estimate in [1, 100 * MIB, 256 * MIB, 256 * MIB + 1, 385 * MIB, 3 * 2 ** 30, 10 ** 10]:
        got = memory.reservation(estimate)
        assert got >= estimate and any(abs(got - s) <= 1 for s in steps), (estimate, got)
        smaller = [s for s in steps if s < got - 1]
        assert not smaller or smaller[-1] < estimate  # the smallest step that holds it
    assert memory.reservation(10) == memory.LADDER_BASE


def test_ray_s_words_for_a_worker_killed_for_memory_become_an_out_of_memory_error():
    text = ("ray.exceptions.OutOfMemoryError: Task was killed due to the node running low on memory.\n"
            "Memory on the node (IP: 127.0.0.1, ID: ab) where the task was running was 22.81GB / 24.00GB (0.95)")
    assert memory.killed_for_memory(text).startswith("out of memory (22.8 GB in use)")  # the node's, as Ray says
    assert memory.killed_for_memory("The actor died because its worker process has died.") is None
    assert memory.out_of_memory(1.5e9, "why") == "out of memory (1.5 GB in use); why"


def _grow(step: int, count: int) -> list:
    held = []
    for _ in range(count):
        held.append(np.ones(step // 8))  # written, so resident
        time.sleep(0.02)
    return held


def test_the_guard_stops_the_thread_that_outgrows_its_limit_and_reports_the_peak():
    outcome = {}

    def trial():
        guard = memory.MemoryGuard(200 * MIB)
        try:
            with guard:
                _grow(32 * MIB, 40)  # up to 1.25 GiB if never stopped
            outcome["stopped"] = False
        except memory.TrialOutOfMemory:
            outcome["stopped"] = True
        outcome["peak"] = guard.peak

    thread = threading.Thread(target=trial)
    thread.start()
    thread.join(60)
    assert outcome["stopped"] and 200 * MIB < outcome["peak"] < 1024 * MIB


def test_the_guard_leaves_a_trial_within_its_limit_alone():
    with memory.MemoryGuard(1024 * MIB) as guard:
        held = _grow(16 * MIB, 4)
    assert not guard.exceeded and 0 <= guard.peak < 1024 * MIB and len(held) == 4


def test_a_trial_that_outgrows_its_memory_is_retried_once_then_recorded_and_the_sweep_goes_on(
        ray_cluster, tmp_path, faults, capsys):
    out = tmp_path / "out"
    planned = sample(SMOKE, {}, 5, 4).trials
    once, always = planned[0].trial_id, planned[2].trial_id
    faults.balloon(once, "once")  # grows past its budget on the first attempt only: the retry fits
    faults.balloon(always, "always")  # grows past any budget
    argv = ("smoke", "--out", str(out), "--num-samples", "4", "--seed", "5")
    logged: list[str] = []
    _, report, counts = sweep(sweep_args(*argv), log=logged.append)
    frame = records(out).set_index("trial_id")
    assert len(frame) == 4 and report.missing == 0 and counts.get("error") == 1
    assert frame.loc[once, "status"] != "error"  # stopped once, then ran to the end with more memory
    message = frame.loc[always, "error"]
    assert frame.loc[always, "status"] == "error" and message.startswith("out of memory (") and "GB in use)" in message
    assert "after a retry" in message
    others = [t.trial_id for t in planned if t.trial_id != always]
    assert frame.loc[others, "status"].isin(["ok", "not_fit", "diverged"]).all()
    assert any("2 stopped for memory and retried" in line for line in logged), logged
    assert "1 of the errors out of memory" in logged[-1]
    # The same command again: everything is recorded, nothing is retried.
    _, again, counts_again = sweep(sweep_args(*argv))
    assert again.chunks == [] and again.skipped == 4 and counts_again == counts


@pytest.mark.parametrize("estimate", [1, 300 * MIB])
def test_each_tune_trial_reserves_its_estimate_on_ray(estimate, monkeypatch):
    from sweeps import units

    monkeypatch.setattr(units, "estimate_bytes", lambda cfg: estimate)
    planned = sample(SMOKE, {}, 0, 3).trials
    items = units.items([[planned[0]], planned[1:]], "s")
    assert [i["memory"] for i in items] == [memory.reservation(estimate), memory.reservation(2 * estimate)]
    assert units.items([[planned[0]]], "s", memory={planned[0].trial_id: 123})[0]["memory"] == 123


def test_a_chunk_shares_its_largest_reservation_only_where_that_costs_no_concurrency():
    """uniform_reservation: one shape (the largest) when every node still runs as many trials as its CPUs (and
    GPUs) allow; None (each its own) when some node would run fewer."""
    gib = 2 ** 30
    laptop = {"CPU": 2.0, "memory": 16.0 * gib}
    assert memory.uniform_reservation([1 * gib, 3 * gib, 2 * gib], [laptop], cpu=1.0) == 3 * gib
    assert memory.uniform_reservation([1 * gib, 9 * gib], [laptop], cpu=1.0) is None  # 16 // 9 = 1 < 2 CPUs
    assert memory.uniform_reservation([1 * gib, 8 * gib], [laptop], cpu=1.0) == 8 * gib  # exactly 2 fit
    big = {"CPU": 16.0, "GPU": 2.0, "memory": 64.0 * gib}
    assert memory.uniform_reservation([1 * gib, 8 * gib], [laptop, big], cpu=1.0) is None  # big: 8 < 16 CPUs
    assert memory.uniform_reservation([1 * gib, 8 * gib], [big], cpu=1.0, gpu=1.0) == 8 * gib  # 2 GPUs bind
    assert memory.uniform_reservation([1 * gib, 40 * gib], [big], cpu=1.0, gpu=1.0) is None
    assert memory.uniform_reservation([], [laptop], cpu=1.0) is None
    assert memory.uniform_reservation([gib], [], cpu=1.0) is None


def test_retry_plans_more_memory_once_then_error_rows(monkeypatch):
    """sweeps.failures.plan_retries: stopped by the guard -> retried with 1.25x its peak; killed by Ray ->
    retried with twice its reservation; a second time, or more than any node has -> one error row each."""
    from sweeps import failures

    rows = []
    monkeypatch.setattr(failures, "largest_node_memory", lambda: 8e9)
    monkeypatch.setattr(failures, "write_error", lambda out, item, message: rows.append((item["id"], message)) or True)
    a, b, c = sample(SMOKE, {}, 1, 3).trials
    items = {t.trial_id: {"id": t.trial_id, "memory": 300 * MIB} for t in (a, b, c)}
    ray_words = "out of memory (22.8 GB in use); the worker was killed by Ray's memory monitor"
    stopped = [(items[a.trial_id], 700 * MIB, None), (items[b.trial_id], 600 * MIB, ray_words),
               (items[c.trial_id], 9 * 10 ** 9, None)]
    again, memory, written = failures.plan_retries(stopped, [[a], [b], [c]], set(), "out")
    assert [u[0].trial_id for u in again] == [a.trial_id, b.trial_id]
    assert memory[a.trial_id] == memory_module.reservation(int(1.25 * 700 * MIB))
    assert memory[b.trial_id] == memory_module.reservation(int(1.25 * 600 * MIB))
    assert written == 1 and rows[0][0] == c.trial_id and "more than any node has" in rows[0][1]
    assert rows[0][1].startswith("out of memory (9.0 GB in use)")
    rows.clear()
    again, _, written = failures.plan_retries(stopped[:2], [[a], [b]], {a.trial_id, b.trial_id}, "out")
    assert again == [] and written == 2
    assert rows[0][1].startswith("out of memory (0.7 GB in use); again, after a retry")
    assert rows[1][1].startswith(ray_words + "; again, after a retry")


def test_a_running_trial_holds_its_reservation_of_ray_s_memory(ray_cluster, tmp_path, faults):
    """While two trials are held in flight, Ray's available `memory` is short by exactly their reservations."""
    import ray

    from sweeps.failures import node_resources
    from sweeps.units import reserve

    planned = {t.trial_id: t for t in sample(SMOKE, {}, 7, 3).trials}
    reserved = {t: reserve([p]) for t, p in planned.items()}
    uniform = memory.uniform_reservation(list(reserved.values()), node_resources(), 1.0)
    total = ray.cluster_resources()["memory"]
    faults.hold(free=0)
    seen: dict = {}

    def watch() -> None:
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and len(faults.started()) < 2:
                time.sleep(0.05)
            running = [m["trials"][0] for m in faults.started()[:2]]
            seen["expected"] = sum(uniform or reserved[t] for t in running)
            while time.monotonic() < deadline:  # Ray's resource view follows within a second or so
                seen["held"] = total - ray.available_resources().get("memory", 0.0)
                if abs(seen["held"] - seen["expected"]) < 1:
                    break
                time.sleep(0.1)
        finally:
            faults.release()

    watcher = threading.Thread(target=watch)
    watcher.start()
    sweep(sweep_args("smoke", "--out", str(tmp_path / "out"), "--num-samples", "3", "--seed", "7"))
    watcher.join(60)
    assert seen["expected"] >= 2 * memory.LADDER_BASE
    assert abs(seen["held"] - seen["expected"]) < 1, seen
