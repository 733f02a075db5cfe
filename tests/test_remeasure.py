"""Measures computed from kept nets after the trials (study.remeasure), and the loader that joins them
(analysis.versions): recomputed values equal the trial's, a measure registered later fills its columns, the
newest version wins, and nothing trains."""

import pandas as pd
import pytest
import torch

import study.measures as registry
import study.packed
import study.train
from analysis import load_points, load_trajectories, load_trials
from analysis.versions import coverage
from study import TrialConfig, load_dataset, load_model, run_trial
from study.measures import MeasureOutput, register
from study.records import measured_trial_ids, kept_trial_ids
from study.remeasure import measure_kept, plan

FAST = dict(dataset="digits", n_train=100, n_test=60, width=16, depth=3, max_steps=300, eval_every=50, lr=0.01,
            n_trajectories=1, trajectory_points=8, transition_samples=1024)
MEASURE_KEYS = {"trials": "measure.probe_test", "points": "probe"}


@pytest.fixture
def sweep(tmp_path):
    """Three trials written as a sweep writes them (two kept nets, one without)."""
    results = [run_trial(TrialConfig(**FAST, seed=s)) for s in (0, 1, 2)]
    for i, result in enumerate(results):
        result.write(str(tmp_path), keep_model=i < 2)
    return str(tmp_path), results


@pytest.fixture
def no_training(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a measure computed from a kept net must not train")
    monkeypatch.setattr(study.train, "train", refuse)
    monkeypatch.setattr(study.packed, "train_packed", refuse)


@pytest.fixture
def probe():
    """A measure registered after the trials: the mean squared norm of the test logits, per point too."""
    @register("probe", record={"measure.probe_test": "float"}, points={"probe": "float"})
    def measure(ctx):
        logits = ctx.logits("test").double()
        per_point = logits.pow(2).sum(dim=1)
        points = pd.DataFrame({"split": "test", "index": range(len(per_point)), "probe": per_point.numpy()})
        return MeasureOutput(record={"measure.probe_test": float(per_point.mean())}, points=points)
    yield measure
    registry.unregister("probe")


def _independent_probe(location, trial_id):
    model = load_model(location, trial_id)
    data = load_dataset(model_config(location, trial_id))
    with torch.no_grad():
        return model(data.x_test).double().pow(2).sum(dim=1)


def model_config(location, trial_id):
    row = load_trials(location).set_index("trial_id").loc[trial_id]
    from study.schema import config_from_record
    return config_from_record(row)


def test_recomputing_an_existing_measure_reproduces_the_trial_s_values(sweep, no_training):
    location, results = sweep
    before = load_trials(location).set_index("trial_id")
    points_before = load_points(location)
    trajectories_before = load_trajectories(location)
    recomputed = ["jacobian", "transitions", "init_distance", "fisher_rao", "pacbayes_flatness", "pacbayes_magnitude"]
    todo = plan(load_trials(location), measured_trial_ids(location), kept_trial_ids(location), names=recomputed)
    assert sorted(todo) == sorted(r.trial_id for r in results[:2])  # the third kept no net
    for trial_id, names in todo.items():
        assert measure_kept(location, trial_id, names) == dict.fromkeys(recomputed)
    assert plan(load_trials(location), measured_trial_ids(location), kept_trial_ids(location),
                names=recomputed) == {}  # done once
    after = load_trials(location).set_index("trial_id")
    columns = [c for name in recomputed for c in registry.COLUMNS[name]["trials"]]
    pd.testing.assert_frame_equal(after[columns], before[columns], rtol=1e-6)
    pd.testing.assert_frame_equal(load_points(location), points_before, rtol=1e-6)
    pd.testing.assert_frame_equal(load_trajectories(location), trajectories_before, rtol=1e-6)
    table = coverage(location, load_trials(location)).set_index("measure")
    assert table.loc["jacobian", "trials"] == 3 and table.loc["jacobian", "later"] == 2


def test_a_measure_registered_after_the_sweep_fills_its_columns_from_the_kept_nets(sweep, probe, no_training):
    location, results = sweep
    assert load_trials(location)["measure.probe_test"].isna().all()
    todo = plan(load_trials(location), measured_trial_ids(location), kept_trial_ids(location))
    assert todo == {r.trial_id: ["probe"] for r in results[:2]}  # every other measure is current
    for trial_id, names in todo.items():
        assert measure_kept(location, trial_id, names) == {"probe": None}
    trials = load_trials(location).set_index("trial_id")
    points = load_points(location)
    for result in results[:2]:
        expected = _independent_probe(location, result.trial_id)
        assert trials.loc[result.trial_id, "measure.probe_test"] == pytest.approx(float(expected.mean()), rel=1e-12)
        assert trials.loc[result.trial_id, "version.probe"] == 1
        mine = points[(points.trial_id == result.trial_id) & (points.split == "test")].sort_values("index")
        assert mine["probe"].to_numpy() == pytest.approx(expected.numpy(), rel=1e-12)
        assert mine["jacobian"].notna().all()  # the trial's own point columns stay
    assert pd.isna(trials.loc[results[2].trial_id, "measure.probe_test"])  # no kept net
    assert len(points) == 3 * (100 + 60)  # joined, not duplicated
    assert plan(load_trials(location), measured_trial_ids(location), kept_trial_ids(location)) == {}
    table = coverage(location, load_trials(location))
    probe_rows = table[table.measure == "probe"].set_index("version")
    assert probe_rows.loc[1, "trials"] == 2 and probe_rows.loc[1, "later"] == 2 and probe_rows.loc[0, "trials"] == 1


def test_a_new_version_replaces_the_trial_s_values_and_the_newest_wins(sweep, monkeypatch, no_training):
    location, results = sweep
    original = registry.MEASURES["baselines"]

    def doubled(ctx):
        out = original(ctx)
        return MeasureOutput(record={k: 2 * v for k, v in out.record.items()})
    monkeypatch.setitem(registry.MEASURES, "baselines", doubled)
    monkeypatch.setitem(registry.VERSIONS, "baselines", 2)
    before = load_trials(location).set_index("trial_id")
    todo = plan(load_trials(location), measured_trial_ids(location), kept_trial_ids(location))
    assert todo == {r.trial_id: ["baselines"] for r in results[:2]}
    for trial_id, names in todo.items():
        measure_kept(location, trial_id, names)
    after = load_trials(location).set_index("trial_id")
    for result in results[:2]:
        assert after.loc[result.trial_id, "measure.param_norm"] == pytest.approx(
            2 * before.loc[result.trial_id, "measure.param_norm"])
        assert after.loc[result.trial_id, "version.baselines"] == 2
    third = results[2].trial_id
    assert after.loc[third, "measure.param_norm"] == before.loc[third, "measure.param_norm"]  # v1, in the trial
    assert after.loc[third, "version.baselines"] == 1


def test_a_measure_that_raises_writes_nothing_and_stays_missing(sweep, probe, monkeypatch):
    location, results = sweep

    def broken(ctx):
        raise FloatingPointError("bad\nsecond line")
    monkeypatch.setitem(registry.MEASURES, "probe", broken)
    outcome = measure_kept(location, results[0].trial_id, ["probe", "gap"])
    assert outcome == {"probe": "FloatingPointError: bad", "gap": None}
    assert set(measured_trial_ids(location)) == {("gap", 1)}
    assert results[0].trial_id in plan(load_trials(location), measured_trial_ids(location), kept_trial_ids(location))


def test_only_fitted_or_unfinished_trials_with_kept_nets_are_planned():
    trials = pd.DataFrame({"trial_id": ["a", "b", "c", "d", "e"],
                           "status": ["ok", "not_fit", "diverged", "error", "ok"],
                           "version.gap": [1, 1, None, None, 0]})
    todo = plan(trials, {}, kept=["a", "b", "c", "d"], names=["gap"])
    assert todo == {"a": ["gap"], "b": ["gap"]}
    trials["version.gap"] = [1, 0, None, None, 0]
    newest = plan(trials, {("gap", 1): {"b"}}, kept=["a", "b", "e"])  # b: an older value, then v1 computed later
    assert "gap" not in newest["a"] and "gap" not in newest["b"] and "gap" in newest["e"]
    assert newest["a"] == [n for n in registry.MEASURES if n != "gap"]  # the others: no version recorded


SKIPPED = ("jacobian", "pacbayes_flatness", "transitions")  # columns in all three tables; in registration order


def test_skipped_measures_stay_empty_change_nothing_else_and_are_computed_later_as_the_trial_would(tmp_path,
                                                                                                  no_training):
    cfg = TrialConfig(**FAST, seed=4)
    full = run_trial(cfg)
    full.write(str(tmp_path / "full"))
    location = str(tmp_path / "skipped")
    skipped = run_trial(cfg, skip_measures=SKIPPED)
    skipped.write(location)
    assert skipped.trial_id == full.trial_id
    left_out = {c for name in SKIPPED for c in registry.COLUMNS[name]["trials"]} | {
        registry.version_column(name) for name in SKIPPED}
    assert left_out.isdisjoint(skipped.record) and left_out <= set(full.record)
    same = [k for k in full.record if k not in left_out and not k.startswith(("time.", "created_at"))]
    assert {k: skipped.record[k] for k in same} == {k: full.record[k] for k in same}  # bit for bit
    jacobian_points = set(registry.COLUMNS["jacobian"]["points"])
    assert jacobian_points <= set(full.points.columns) and jacobian_points.isdisjoint(skipped.points.columns)
    assert len(full.trajectories) and not len(skipped.trajectories)

    loaded = load_trials(location)
    assert loaded[sorted(left_out)].isna().all().all()  # empty columns, not missing ones
    todo = plan(loaded, measured_trial_ids(location), kept_trial_ids(location))
    assert todo == {cfg.trial_id: list(SKIPPED)}  # every other measure is current
    assert measure_kept(location, cfg.trial_id, todo[cfg.trial_id]) == dict.fromkeys(SKIPPED)
    for load in (load_trials, load_points, load_trajectories):  # now as if the trial had run them
        later, whole = load(location), load(str(tmp_path / "full"))
        keep = [c for c in whole.columns if not c.startswith(("time.", "created_at"))]
        pd.testing.assert_frame_equal(later[keep], whole[keep], rtol=1e-6, check_dtype=False)


def test_packed_trials_skip_the_same_measures():
    cfgs = [TrialConfig(**{**FAST, "optimizer": "adam"}, seed=s) for s in (0, 1)]
    packed = study.packed.run_packed(cfgs, skip_measures=("pacbayes_flatness", "pacbayes_magnitude"))
    assert [r.record["env.pack_size"] for r in packed] == [2, 2]
    for result in packed:
        assert "measure.pacbayes_flatness" not in result.record and "version.pacbayes_magnitude" not in result.record
        assert result.record["version.jacobian"] == registry.VERSIONS["jacobian"]
