"""`sensitivity measure DIR`: measures added to a finished sweep from its kept nets, on Ray, without training;
resumable after kill -9, each value once; the loader and the report show them with no other step."""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import time

import pandas as pd
import pytest

from cli_runs import cli, popen_cli, sweep_args
from study.measures import COLUMNS
from study.records import measured_trial_ids
from sweeps.command import main

# The quick preset's nets, briefly trained (L-BFGS left out: its 100 full-batch iterations alone take 5 s).
QUICK_NETS = ("quick", "-n", "3", "--set", "max_steps=100", "--set", "optimizer=adam,sgd,momentum,rmsprop")


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished sweep of the quick preset's nets, trained here (in-process, on the tests' Ray cluster)."""
    return tmp_path_factory.mktemp("finished")


def _sweep(out, ray_cluster) -> str:
    from sweeps.cli import sweep

    if not (out / "trials").exists():
        sweep(sweep_args(*QUICK_NETS, "--out", str(out)), log=lambda text: None)
    return str(out)


@pytest.fixture
def late_measure():
    """The late_probe plugin (tests/worker_hooks/late_measure.py) registered in this process too; forgotten after."""
    import study.measures as registry

    sys.modules.pop("late_measure", None)
    import late_measure as module  # noqa: F401 -- registers late_probe

    yield module
    registry.unregister(module.NAME)
    sys.modules.pop("late_measure", None)


def _tables(location):
    from analysis import load_points, load_trajectories, load_trials
    from analysis.load import load_table

    return ({t: load_table(location, t) for t in ("trials", "points", "trajectories")},
            {"trials": load_trials(location), "points": load_points(location),
             "trajectories": load_trajectories(location)})


def _copy_of(location: str, tmp_path) -> str:
    """The sweep's records and kept nets, without anything measured later."""
    for folder in ("trials", "points", "trajectories", "models"):
        shutil.copytree(os.path.join(location, folder), tmp_path / "copy" / folder)
    return str(tmp_path / "copy")


def test_the_training_guard_stops_training(late_measure, monkeypatch, tmp_path):
    """The guard the next test relies on: with it, a trial cannot train (so its absence there means something)."""
    import torch

    import study.packed
    import study.train
    import study.trial
    from study import TrialConfig, run_trial

    for owner, name in ((study.train, "train"), (study.trial, "train"), (study.packed, "train_packed"),
                        (torch.Tensor, "backward")):
        monkeypatch.setattr(owner, name, getattr(owner, name))  # put back after the test
    late_measure.forbid_training(str(tmp_path / "marker.txt"))
    assert run_trial(TrialConfig(dataset="synthetic", n_train=40, n_test=20, max_steps=5)).status == "error"
    assert (tmp_path / "marker.txt").read_text().startswith("training attempted")


def test_a_measure_registered_after_the_sweep_reaches_every_trial_and_the_report_without_training(
        finished, ray_cluster, late_measure, tmp_path):
    from analysis.report import build_report

    location = _sweep(finished, ray_cluster)
    marker = tmp_path / "trained.txt"
    env = {"SENSITIVITY_MEASURES": "late_measure", late_measure.FORBID_ENV: str(marker)}
    proc = cli("measure", location, "--address", ray_cluster.address, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "late_probe v1 for 3 trials" in proc.stdout and "measured 3 values" in proc.stdout
    assert not marker.exists()  # no process of the command trained anything
    _, joined = _tables(location)
    trials = joined["trials"]
    assert trials["measure.late_probe_test"].notna().all() and (trials["version.late_probe"] == 1).all()
    test_points = joined["points"][joined["points"].split == "test"]
    assert test_points["late_probe"].notna().all()
    means = test_points.groupby("trial_id")["late_probe"].mean()
    assert trials.set_index("trial_id")["measure.late_probe_test"].to_dict() == pytest.approx(means.to_dict())
    page = open(build_report(location, str(tmp_path / "report"), recompute=False, n_boot=50,
                             log=lambda text: None)).read()
    row = page[page.index("<td>late_probe</td>"):]
    assert row.startswith("<td>late_probe</td><td>v1</td><td>v1</td><td>3</td><td>3</td>")

    again = cli("measure", location, "--address", ray_cluster.address, env=env, timeout=300)
    assert again.returncode == 0 and "nothing: every measure is current" in again.stdout  # nothing twice


def test_recomputed_measures_equal_the_trial_s_and_a_killed_run_resumes_writing_each_value_once(
        finished, ray_cluster, late_measure, tmp_path):
    location = _copy_of(_sweep(finished, ray_cluster), tmp_path)
    written, _ = _tables(location)
    hold = tmp_path / "hold"
    hold.mkdir()
    (hold / "hold").touch()
    env = {"SENSITIVITY_MEASURES": "late_measure", late_measure.HOLD_ENV: str(hold)}
    names = "gap,jacobian,transitions,baselines,pointwise,late_probe"
    args = ("measure", location, "--measures", names, "--address", ray_cluster.address, "--max-concurrent", "1")
    driver = popen_cli(*args, env=env)
    deadline = time.monotonic() + 240
    while not any(p.name.startswith("started-") for p in hold.iterdir()):  # held inside late_probe
        assert driver.poll() is None and time.monotonic() < deadline, driver.stdout.read() if driver.poll() else ""
        time.sleep(0.1)
    os.kill(driver.pid, 9)
    driver.wait(timeout=30)
    driver.stdout.close()
    before = sum(len(ids) for ids in measured_trial_ids(location).values())
    assert before >= 5  # the first trial's other five measures were written before late_probe held it
    (hold / "hold").unlink()
    proc = cli(*args, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    already = re.search(r"(\d+) values already current were left as they are", proc.stdout)
    assert already and int(already.group(1)) >= before  # not computed again
    done = measured_trial_ids(location)
    trial_ids = set(written["trials"]["trial_id"])
    assert {name: ids for (name, _), ids in done.items()} == {n: trial_ids for n in names.split(",")}
    _, joined = _tables(location)
    assert not joined["trials"]["trial_id"].duplicated().any()
    for table in ("trials", "points", "trajectories"):  # every recomputed value equals the trial's own
        ours, theirs = joined[table], written[table]
        assert len(ours) == len(theirs), table
        late = {*COLUMNS["late_probe"][table], "version.late_probe"}  # computed only later
        keep = [c for c in theirs.columns if not c.startswith(("time.", "env.", "created_at")) and c not in late]
        pd.testing.assert_frame_equal(ours[keep].reset_index(drop=True), theirs[keep].reset_index(drop=True),
                                      rtol=1e-6, check_dtype=False)


def test_a_sweep_that_skips_measures_says_so_and_the_measure_command_adds_them(ray_cluster, tmp_path):
    """The paper-scale workflow: the costly measures left out of the sweep, computed later from the kept nets."""
    import json

    from analysis import load_trials
    from sweeps.cli import sweep

    out, lines = tmp_path / "out", []
    skip = ("pacbayes_flatness", "pacbayes_magnitude")
    _, report, counts = sweep(sweep_args("smoke", "--out", str(out), "-n", "4", "--skip-measures", ",".join(skip)),
                              log=lines.append)
    assert report.missing == 0 and sum(counts.values()) == 4
    assert f"measures skipped: {', '.join(skip)}; `sensitivity measure {out}` computes them" in lines[-1]
    (meta,) = (out / "sweeps").iterdir()
    assert json.loads(meta.read_text())["skip_measures"] == list(skip)
    columns = [c for name in skip for c in (*COLUMNS[name]["trials"], f"version.{name}")]
    trials = load_trials(str(out))
    measured = trials[trials.status.isin(["ok", "not_fit"])]
    assert len(measured) >= 1 and trials[columns].isna().all().all()
    assert measured["measure.jacobian_test"].notna().all() and measured["measure.fisher_rao"].notna().all()

    proc = cli("measure", str(out), "--address", ray_cluster.address, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in skip:
        assert f"{name} v2 for {len(measured)} trials" in proc.stdout
    assert "fisher_rao" not in proc.stdout.split("to compute:")[1].splitlines()[0]  # the sweep computed the rest
    after = load_trials(str(out)).set_index("trial_id").loc[measured.trial_id]
    assert after[columns].notna().all().all() and (after["version.pacbayes_flatness"] == 2).all()
    assert (after["flatness.sigma"] > 0).all()


def test_bad_input_is_one_line_and_exit_2_before_anything_is_written(tmp_path, capsys):
    from study import TrialConfig, run_trial

    run_trial(TrialConfig(dataset="synthetic", n_train=40, n_test=20, max_steps=5)).write(str(tmp_path / "bare"),
                                                                                          keep_model=False)
    (tmp_path / "empty").mkdir()
    cases = {("measure", str(tmp_path / "bare"), "--measures", "nope"): "unknown measure 'nope'",
             ("measure", str(tmp_path / "missing")): "is not a directory",
             ("measure", str(tmp_path / "empty")): "holds no trial records",
             ("measure", str(tmp_path / "bare")): "keeps no trained nets",
             ("measure", str(tmp_path / "bare"), "--max-concurrent", "0"): "--max-concurrent must be a positive"}
    for argv, words in cases.items():
        assert main(list(argv)) == 2
        err = capsys.readouterr().err
        assert words in err and err.count("\n") == 1, (argv, err)
    assert sorted(p.name for p in (tmp_path / "bare").iterdir()) == ["points", "trajectories", "trials"]
    assert not list((tmp_path / "empty").iterdir())


def test_no_keep_models_keeps_no_nets_on_trial_and_sweep(tmp_path, capsys):
    from study.config import TrialConfig
    from sweeps.cli import prepare
    from sweeps.sampling import PlannedTrial
    from sweeps.units import items
    from sweeps.worker import _run

    cfg = ["--set", "dataset=synthetic", "--set", "n_train=40", "--set", "n_test=20", "--set", "max_steps=5"]
    assert main(["trial", *cfg, "--out", str(tmp_path / "one"), "--no-progress", "--no-keep-models"]) in (0, 1)
    assert "models/" not in capsys.readouterr().out and not (tmp_path / "one" / "models").exists()
    assert main(["trial", *cfg, "--out", str(tmp_path / "two"), "--no-progress"]) in (0, 1)
    assert "models/" in capsys.readouterr().out and len(list((tmp_path / "two" / "models").iterdir())) == 1

    plan = prepare(sweep_args("smoke", "--out", str(tmp_path / "sweep"), "-n", "2", "--no-keep-models"))
    assert plan.settings.keep_models is False
    trial = TrialConfig(dataset="synthetic", n_train=40, n_test=20, max_steps=5)
    (item,) = items([[PlannedTrial(trial)]], "s")
    for keep, folder in ((False, "off"), (True, "on")):  # what the worker does with the sweep's setting
        _run(item, {"out": str(tmp_path / folder), "device": "cpu", "threads": 1, "data_root": None,
                    "keep_models": keep})
    assert not (tmp_path / "off" / "models").exists()
    assert (tmp_path / "on" / "models" / f"{trial.trial_id}.safetensors").exists()


def test_where_limits_the_measure_command_to_the_trials_it_selects(tmp_path, capsys):
    from analysis import load_trials
    from study import TrialConfig, run_trial
    from sweeps.measure_cli import add_arguments, prepare

    location = str(tmp_path / "done")
    for width, seed in ((8, 0), (16, 0), (16, 1)):
        run_trial(TrialConfig(dataset="synthetic", n_train=40, n_test=20, max_steps=5, width=width, seed=seed),
                  skip_measures=("pacbayes_flatness",)).write(location)
    trials = load_trials(location)
    wide = set(trials.loc[trials["hp.width"] == 16, "trial_id"])
    assert len(trials) == 3 and len(wide) == 2

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    lines = []
    chosen = prepare(parser.parse_args([location, "--where", "`hp.width` == 16"]), log=lines.append)
    assert chosen.todo == {tid: ["pacbayes_flatness"] for tid in wide}  # the narrow net is left alone
    assert "3 trial records, 2 of them where `hp.width` == 16" in lines[0]
    assert set(prepare(parser.parse_args([location]), log=lines.append).todo) == set(trials["trial_id"])
    later = prepare(parser.parse_args([location, "--where", "`measure.pacbayes_flatness`.isna()",
                                       "--measures", "gap"]), log=lines.append)
    assert set(later.todo) == set(trials["trial_id"])  # a query over a measure's (empty) column
    for where, words in (("`hp.widht` > 2", "no column `hp.widht`; did you mean `hp.width`?"),
                         ("`hp.width` +", "is not a query over the trials table"),
                         ("`hp.width` * 2", "is not a condition"),
                         ("`hp.width` > 100", "matches none of the 3 trials")):
        assert main(["measure", location, "--where", where]) == 2
        err = capsys.readouterr().err
        assert words in err and err.count("\n") == 1, (where, err)
    assert not (tmp_path / "done" / "measures").exists()
