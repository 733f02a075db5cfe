import os
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from sweeps.command import main


def test_trial_command_writes_tables_and_prints_a_summary(tmp_path, capsys):
    out = tmp_path / "res"
    code = main(["trial", "--set", "dataset=synthetic", "--set", "n_train=100", "--set", "n_test=50",
                 "--set", "width=16", "--set", "n_trajectories=0", "--out", str(out), "--no-progress", "--device", "cpu"])
    text = capsys.readouterr().out
    assert code == 0 and "status=ok" in text and "jacobian test" in text
    (trial_file,) = (out / "trials").iterdir()
    assert pq.read_table(trial_file).num_rows == 1
    assert (out / "points" / trial_file.name).exists() and (out / "trajectories" / trial_file.name).exists()


@pytest.mark.parametrize("args, fragment", [
    (["--set", "nonlinearity=swish"], "allowed: relu, relu6, tanh, hardtanh, hardsigmoid"),
    (["--set", "width=0"], "width must be a positive integer"),
    (["--set", "lr=-1"], "lr must be a positive finite number"),
    (["--set", "colour=red"], "unknown field 'colour'"),
    (["--set", "width"], "--set takes FIELD=VALUE"),
    (["--set", "dataset=cifar10", "--data-root", "/nonexistent"], "data set cifar10 not found"),
    (["--skip-measures", "jacobian,sharpness"], "--skip-measures: unknown measure 'sharpness'; registered: "),
    (["--skip-measures", " , "], "--skip-measures is empty"),
])
def test_bad_settings_are_one_line_errors_and_write_nothing(tmp_path, args, fragment, capsys, monkeypatch):
    out = tmp_path / "res"
    monkeypatch.setenv("SENSITIVITY_DATA_ROOT", str(tmp_path / "data"))
    assert main(["trial", *args, "--out", str(out), "--no-progress"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0] and "Traceback" not in lines[0]
    assert not out.exists()


def test_a_bad_setting_is_one_line_on_the_stderr_of_the_whole_process(tmp_path):
    """What a user sees: the command as a process writes its one line and nothing else (no warning of an
    import, no traceback) to stderr; the cases above check each message in this process."""
    out = tmp_path / "res"
    proc = subprocess.run([sys.executable, "-m", "sweeps.command", "trial", "--set", "dataset=cifar10", "--data-root",
                           "/nonexistent", "--out", str(out), "--no-progress"], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "SENSITIVITY_DATA_ROOT": str(tmp_path / "data")})
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "data set cifar10 not found" in lines[0] and "Traceback" not in proc.stderr
    assert not out.exists()



def test_without_ray_sweep_and_measure_say_so_in_one_line_and_trial_still_runs(tmp_path):
    """An image with no Ray (many GPU images): the Ray commands stop with one line before any work; a single
    trial needs no Ray."""
    from no_ray import no_ray_pythonpath

    env = {**os.environ, "PYTHONPATH": no_ray_pythonpath(tmp_path, os.environ.get("PYTHONPATH", ""))}
    for args in (["sweep", "smoke", "--out", str(tmp_path / "s")], ["measure", str(tmp_path / "s")]):
        proc = subprocess.run([sys.executable, "-m", "sweeps.command", *args], capture_output=True, text=True,
                              timeout=120, env=env)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1, proc.stderr
        assert f"sensitivity {args[0]} runs on Ray, which does not import here" in lines[0]
        assert "Traceback" not in proc.stderr and not (tmp_path / "s").exists()
    proc = subprocess.run([sys.executable, "-m", "sweeps.command", "trial", "--set", "dataset=synthetic",
                           "--set", "max_steps=20", "--out", str(tmp_path / "t"), "--no-progress"],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert list((tmp_path / "t" / "trials").glob("*.parquet"))


@pytest.mark.parametrize("command", ["trial", "sweep", "measure", "analyze"])
def test_help_is_printed_as_written(command, capsys):
    """Every subcommand's --help: no argparse escape (%%) left in the text (the trial's description had one)."""
    with pytest.raises(SystemExit) as done:
        main([command, "--help"])
    text = capsys.readouterr().out
    assert done.value.code == 0 and "%%" not in text and "usage: sensitivity " + command in text
