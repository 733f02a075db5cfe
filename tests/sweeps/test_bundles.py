"""Bundles (`--bundle K`): K trials or packs run one after the other in one Tune trial, each writing its own
record; a rerun skips the recorded ones; error rows and memory retries reach every member."""

from __future__ import annotations

import pytest

from cli_runs import sweep_args
from study.config import ConfigError
from study.records import completed_trial_ids
from sweep_helpers import records
from sweeps import failures
from sweeps.cli import parse_bundle, sweep
from sweeps.presets import SMOKE
from sweeps.sampling import sample
from sweeps.runner import RunSettings, trials_per_chunk
from sweeps.units import ALONE_S, BUNDLE_S, bundle_items, cost_bundles, cost_groups, items, trial_items
from sweeps.worker import _run

RUN = {"device": "cpu", "threads": 1, "data_root": None, "keep_models": False}


@pytest.fixture
def tune_items(monkeypatch):
    """The items of every Tune experiment the sweep fits, one list per chunk, in order (a spy on
    sweeps.runner.fit_experiment, which still fits them)."""
    from sweeps import runner

    seen, real = [], runner.fit_experiment

    def spy(trainable_fn, chunk_items, *args, **kwargs):
        seen.append(chunk_items)
        return real(trainable_fn, chunk_items, *args, **kwargs)
    monkeypatch.setattr(runner, "fit_experiment", spy)
    return seen


def _planned(n, seed=0):
    return list(sample(SMOKE, {}, seed, n).trials)


def test_bundles_group_k_unit_items_and_count_their_trials():
    planned = _planned(7)
    units = [[planned[0], planned[1]], *[[t] for t in planned[2:]]]  # a hand-made pack of two, then five alone
    unit_items = items(units, "s")
    bundled = bundle_items(unit_items, 3)
    assert [b.get("n", 1) for b in bundled] == [4, 3]  # the pack counts its two trials
    first = bundled[0]
    assert first["id"] == f"bundle3-{unit_items[0]['id']}" and first["memory"] == max(i["memory"] for i in unit_items[:3])
    assert [t["id"] for t in trial_items(first)] == [t.trial_id for t in planned[:4]]
    assert bundle_items(unit_items, 1) == unit_items
    assert bundle_items(unit_items[:4], 3)[1] is unit_items[3]  # a group of one stays the unit it is


def test_automatic_bundles_fill_about_bundle_s_and_leave_long_units_alone():
    assert cost_groups([0.06] * 500, 1) == [list(range(lo, min(lo + 50, 500))) for lo in range(0, 500, 50)]  # 3 s
    # at least two bundles a slot: 100 x 0.06 s on 2 slots is 4 bundles of 1.5 s, not 2 of 3 s
    assert [len(g) for g in cost_groups([0.06] * 100, 2)] == [25] * 4
    long = ALONE_S
    groups = cost_groups([0.2, long, 0.2, 0.2, 5.0, 0.2], 1)  # short total 0.8 s: bundles of at most 0.4 s
    assert sorted(map(sorted, groups)) == [[0, 2], [1], [3, 5], [4]]
    assert all(len(g) == 1 for g in cost_groups([long] * 6, 2))  # the quick preset: every trial alone
    assert cost_groups([], 4) == []


def test_cost_bundles_are_bundle_items_of_the_groups():
    planned = _planned(12)
    unit_items = items([[t] for t in planned], "s")
    assert all(0 < i["seconds"] < ALONE_S for i in unit_items)
    bundled = cost_bundles(unit_items, 3)  # 12 short trials on 3 slots: bundles of at most a sixth of the total
    limit = sum(i["seconds"] for i in unit_items) / 6
    assert 6 <= len(bundled) < 12 and all(b["seconds"] <= limit * (1 + 1e-9) for b in bundled)
    assert [t["id"] for b in bundled for t in trial_items(b)] == [t.trial_id for t in planned]
    first = next(b for b in bundled if "bundle" in b)
    assert abs(first["seconds"] - sum(i["seconds"] for i in first["bundle"])) < 1e-12
    assert first["n"] == len(first["bundle"]) and first["memory"] == max(i["memory"] for i in first["bundle"])


def test_chunks_count_tune_trials():
    work = [[t] for t in _planned(400)]
    assert trials_per_chunk(work, RunSettings(out="/x", chunk_size=10, bundle=1), 2) == 10
    assert trials_per_chunk(work, RunSettings(out="/x", chunk_size=10, bundle=4), 2) == 40
    tune_trials = len(cost_groups([i["seconds"] for i in items(work, "s")], 2))
    assert tune_trials < 400 / 20 and BUNDLE_S > 1
    assert trials_per_chunk(work, RunSettings(out="/x", chunk_size=10, bundle=0), 2) == round(10 * 400 / tune_trials)


def test_a_bundle_writes_every_member_and_a_rerun_skips_the_recorded_ones(tmp_path):
    out = str(tmp_path)
    planned = _planned(3)
    (bundle,) = bundle_items(items([[t] for t in planned], "s"), 3)
    shown = _run(bundle, {**RUN, "out": out})
    assert completed_trial_ids(out) == {t.trial_id for t in planned} and shown["trials"] == 3
    mtimes = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "trials").iterdir()}
    (tmp_path / "trials" / f"{planned[1].trial_id}.parquet").unlink()  # as if the worker died there
    again = _run(bundle, {**RUN, "out": out})
    assert again["trials"] == 1 and completed_trial_ids(out) == {t.trial_id for t in planned}
    after = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "trials").iterdir()}
    assert all(after[name] == mtimes[name] for name in after if planned[1].trial_id not in name)


def test_error_rows_and_memory_retries_reach_the_unfinished_members(tmp_path, monkeypatch):
    out = str(tmp_path)
    planned = _planned(3)
    unit_items = items([[t] for t in planned], "s")
    (bundle,) = bundle_items(unit_items, 3)
    _run(unit_items[0], {**RUN, "out": out})  # the first member finished before the bundle failed
    monkeypatch.setattr(failures, "largest_node_memory", lambda: 64 * 2 ** 30)
    chunk = [[t] for t in planned]
    again, memory, written = failures.plan_retries([(bundle, 10 * 2 ** 20, None)], chunk, set(), out)
    assert again == chunk[1:] and written == 0 and set(memory) == {t.trial_id for t in planned[1:]}
    assert failures._error_rows(out, bundle, "failed 3 attempts; last: boom") == 2
    rows = records(tmp_path).set_index("trial_id")
    assert (rows.loc[[t.trial_id for t in planned[1:]], "status"] == "error").all()
    assert rows.loc[planned[0].trial_id, "status"] != "error"


def test_a_bundle_tune_gave_up_on_is_handed_back_not_given_error_rows(tmp_path):
    planned = _planned(2)
    (bundle,) = bundle_items(items([[t] for t in planned], "s"), 2)

    class Failed:
        error, config, path = RuntimeError("The actor died unexpectedly"), {"item": bundle}, ""
    handed = []
    assert failures.write_error_rows([Failed()], 3, str(tmp_path), {}, [], handed) == 0
    assert handed == [bundle] and not completed_trial_ids(str(tmp_path))


@pytest.mark.parametrize("value", ["0", "-2", "two", "1.5", ""])
def test_bundle_is_auto_or_a_count(tmp_path, value):
    with pytest.raises(ConfigError, match="--bundle must be auto or a whole number"):
        sweep(sweep_args("smoke", "--out", str(tmp_path / "o"), "--bundle", value))
    assert not (tmp_path / "o").exists()  # refused before any work


def test_bundle_values():
    assert [parse_bundle(v) for v in ("auto", "AUTO", "1", "7", 3)] == [0, 0, 1, 7, 3]


def test_a_bundled_sweep_records_every_trial_and_a_hopeless_one_alone_gets_the_error_row(ray_cluster, tmp_path,
                                                                                        faults):
    out = tmp_path / "out"
    planned = sample(SMOKE, {}, 5, 9).trials
    hopeless = planned[4].trial_id
    faults.crash(hopeless, "always")  # kills its worker every attempt: the rest of its bundle must not pay
    _, report, counts = sweep(sweep_args("smoke", "--out", str(out), "--num-samples", "9", "--seed", "5",
                                         "--bundle", "3", "--max-failures", "1"))
    frame = records(out).set_index("trial_id")
    assert len(frame) == 9 and report.missing == 0 and counts["error"] == 1
    assert frame.loc[hopeless, "status"] == "error" and (frame.drop(index=hopeless)["status"] != "error").all()
    assert frame["env.worker"].nunique() < 9
    _, again, _ = sweep(sweep_args("smoke", "--out", str(out), "--num-samples", "9", "--seed", "5", "--bundle", "3"))
    assert again.chunks == [] and again.skipped == 9


def test_a_default_sweep_bundles_short_trials_by_their_estimated_cost(ray_cluster, tmp_path, tune_items):
    import json

    from sweeps import cluster

    seen = tune_items
    out = tmp_path / "out"
    plan, report, counts = sweep(sweep_args("smoke", "--out", str(out), "--num-samples", "16"))
    assert report.missing == 0 and len(records(out)) == 16 and sum(c.trials for c in report.chunks) == 16
    (chunk_items,) = seen
    slots = cluster.cluster_slots(plan.settings)
    assert 2 * slots <= len(chunk_items) < 16 and any("bundle" in item for item in chunk_items)
    assert sorted(t["id"] for item in chunk_items for t in trial_items(item)) == sorted(
        t.trial_id for t in plan.sample.trials)
    meta = json.loads(next((out / "sweeps").iterdir()).read_text())
    assert meta["bundle"] == "auto"


def test_the_speed_factor_is_the_median_measured_over_estimated_seconds(tmp_path):
    import statistics

    from study.cost import estimate_seconds
    from sweeps.units import speed_factor

    out = str(tmp_path)
    planned = _planned(5)
    assert speed_factor(out, planned, set()) == (1.0, 0)
    for item in items([[t] for t in planned[:3]], "s"):
        _run(item, {**RUN, "out": out})
    frame = records(tmp_path).set_index("trial_id")
    want = statistics.median(frame.loc[t.trial_id, "time.total_s"] / estimate_seconds(t.config) for t in planned[:3])
    factor, n = speed_factor(out, planned, completed_trial_ids(out))
    assert n == 3 and abs(factor - want) < 1e-12
    (tmp_path / "trials" / f"{planned[0].trial_id}.parquet").write_bytes(b"not parquet")  # unreadable: skipped
    factor, n = speed_factor(out, planned, completed_trial_ids(out))
    assert n == 2


def test_later_chunks_size_their_bundles_with_the_measured_speed(ray_cluster, tmp_path, tune_items):
    seen, lines = tune_items, []
    plan, report, _ = sweep(sweep_args("smoke", "--out", str(tmp_path / "o"), "--num-samples", "24", "--chunk-size",
                                       "1"), log=lines.append)
    assert report.missing == 0 and len(seen) >= 2
    first, later = seen[0], [i for chunk in seen[1:] for i in chunk]
    by_id = {t.trial_id: t for t in plan.sample.trials}
    from study.cost import estimate_seconds

    def ratio(item):
        return item["seconds"] / sum(estimate_seconds(by_id[t["id"]].config) for t in trial_items(item))
    assert all(abs(ratio(i) - 1) < 1e-9 for i in first)  # nothing recorded yet: the estimates as they are
    said = [line for line in lines if "x their estimated seconds" in line]
    assert said and all(abs(ratio(i) - 1) > 1e-3 for i in later)  # scaled by what the first chunk measured


def test_a_bundle_of_packs_writes_every_member_record(ray_cluster, tmp_path, tune_items):
    """--pack and bundles compose: 8 compatible trials, packs of 2, two packs a bundle: 2 Tune trials."""
    seen = tune_items
    same_shape = ["--set", "width=8", "--set", "depth=2", "--set", "nonlinearity=relu", "--set", "optimizer=adam"]
    out = tmp_path / "o"
    _, report, _ = sweep(sweep_args("smoke", "--num-samples", "8", *same_shape, "--out", str(out), "--pack", "2",
                                    "--bundle", "2"))
    (chunk_items,) = seen
    assert len(chunk_items) == 2 and all(len(i["bundle"]) == 2 and all("pack" in m for m in i["bundle"])
                                         for i in chunk_items)
    frame = records(out)
    assert len(frame) == 8 and report.missing == 0 and set(frame["env.pack_size"]) == {2}
