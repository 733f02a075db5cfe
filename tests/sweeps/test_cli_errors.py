"""Bad input is refused before any work, as one line (exit 2), with nothing written."""

import os
import time

import pytest

from sweeps.command import main
from sweeps import output
from sweeps.cli import prepare
from cli_runs import cli, sweep_args
from sweep_helpers import free_port


@pytest.mark.parametrize("argv, fragment", [
    (["huge"], "unknown preset 'huge'; presets: smoke, quick, paper, pairs"),
    (["smoke", "--set", "colour=red"], "unknown field 'colour'"),
    (["smoke", "--set", "width=abc"], "width must be of type int, got 'abc'"),
    (["smoke", "--set", "nonlinearity=relu,swish"], "unknown nonlinearity 'swish'; allowed: relu"),
    (["smoke", "--set", "width"], "--set takes FIELD=VALUE"),
    (["smoke", "--num-samples", "0"], "--num-samples must be a positive integer"),
    (["smoke", "--cpus-per-trial", "0"], "must be >= 0 and not both 0"),
    (["paper", "--set", "dataset=cifar10", "--data-root", "/nonexistent"], "data set cifar10 not found"),
    (["smoke", "--skip-measures", "flatness"], "--skip-measures: unknown measure 'flatness'; registered: baselines, "),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, monkeypatch, argv, fragment):
    monkeypatch.setenv("SENSITIVITY_DATA_ROOT", str(tmp_path / "data"))
    out = tmp_path / "res"
    assert main(["sweep", *argv, "--out", str(out)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sensitivity sweep: error: ") and fragment in lines[0]
    assert not out.exists()


def test_unwritable_out_is_refused(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    for out in (blocker / "res", blocker, "/proc/no/such/dir"):
        assert main(["sweep", "smoke", "--out", str(out)]) == 2
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert f"--out {out}" in line
    assert blocker.read_text() == "x" and sorted(os.listdir(tmp_path)) == ["a-file"]


def test_gpu_fraction_runs_on_cuda_with_that_resource_share(tmp_path):
    plan = prepare(sweep_args("smoke", "--out", str(tmp_path / "o"), "--gpus-per-trial", "0.25",
                              "--cpus-per-trial", "2"))
    assert plan.settings.device == "cuda" and plan.settings.resources == {"cpu": 2.0, "gpu": 0.25}
    assert plan.settings.threads == 2
    cpu = prepare(sweep_args("smoke", "--out", str(tmp_path / "o")))
    assert cpu.settings.device == "cpu" and cpu.settings.resources == {"cpu": 1.0, "gpu": 0.0}
    assert not (tmp_path / "o").exists()


def test_a_dead_address_fails_with_one_line(tmp_path):
    out = tmp_path / "res"
    proc = cli("sweep", "smoke", "--out", str(out), "--address", f"127.0.0.1:{free_port()}", timeout=300)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "no Ray cluster answers" in lines[0] and "Traceback" not in proc.stderr
    assert not out.exists()
    # auto resolves through RAY_ADDRESS: the same refusal
    proc = cli("sweep", "smoke", "--out", str(out), "--address", "auto", timeout=300,
                   env={"RAY_ADDRESS": f"127.0.0.1:{free_port()}"})
    assert proc.returncode == 2 and "no Ray cluster answers" in proc.stderr and not out.exists()


def test_the_address_check_is_one_connection_attempt_bounded_by_the_timeout(monkeypatch):
    """What makes the refusal fast is ours: at most two connects (the address Ray resolves 127.0.0.1 to, then
    127.0.0.1 itself), each bounded by CONNECT_TIMEOUT_S, and Ray is never asked to join. Nothing is sent:
    the connection is a stand-in."""
    import ray

    from study.config import ConfigError
    from sweeps import cluster

    attempts = []

    def never_answers(address, timeout=None):
        attempts.append((address, timeout))
        raise TimeoutError("timed out")

    def no_join(*args, **kwargs):
        raise AssertionError("ray.init was called for a dead address")

    monkeypatch.setattr(cluster.socket, "create_connection", never_answers)
    monkeypatch.setattr(ray, "init", no_join)
    with pytest.raises(ConfigError, match="no Ray cluster answers there.*TimeoutError"):
        cluster.resolve_address("127.0.0.1:6379")
    assert 1 <= len(attempts) <= 2 and attempts[-1] == (("127.0.0.1", 6379), cluster.CONNECT_TIMEOUT_S)
    assert all(port == 6379 and timeout == cluster.CONNECT_TIMEOUT_S for (_, port), timeout in attempts)
    assert 0 < cluster.CONNECT_TIMEOUT_S <= 10


def test_stale_hidden_temp_files_are_cleaned_and_fresh_ones_kept(tmp_path):
    trials = tmp_path / "trials"
    trials.mkdir()
    old, fresh, record = trials / ".tmp-a.parquet", trials / ".tmp-b.parquet", trials / "abc.parquet"
    for f in (old, fresh, record):
        f.write_bytes(b"x")
    os.utime(old, (time.time() - 2 * output.STALE_TEMP_S,) * 2)
    assert output.clean_stale_temps(str(tmp_path)) == 1
    assert not old.exists() and fresh.exists() and record.exists()


def test_metadata_json_is_written_atomically(tmp_path):
    path = output.write_json_atomic(str(tmp_path), "sweeps/x.json", {"a": 1})
    assert open(path).read().strip().startswith("{") and os.listdir(tmp_path / "sweeps") == ["x.json"]
