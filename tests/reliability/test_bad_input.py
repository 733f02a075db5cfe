"""Bad input is refused before any work starts, by `sensitivity sweep` and `sensitivity trial` alike: one line
on stderr, exit status 2, and nothing written (no output directory, no data downloaded).

tests/sweeps/test_cli_errors.py covers for the sweep: an unknown preset, field or value, a value of the
wrong type, width 0, a data set missing under /nonexistent, a dead --address (also through RAY_ADDRESS).
tests/test_cli.py covers for the trial: an unknown field or value, width 0, a negative lr. Here: the rest
of the issue's list, for both commands.
"""

from __future__ import annotations

import pytest

from .helpers import listing
from sweeps.command import main

TRIAL_FLAGS = ("--no-progress", "--device", "cpu")

# (--set assignments, what the one line must say)
REFUSED = [
    (["depth=1"], "depth must be at least 2"),
    (["lr=-0.1"], "lr must be a positive finite number, got -0.1"),
    (["lr=nan"], "lr must be a positive finite number"),
    (["regularizer=jacobian", "reg_strength=-1"], "reg_strength must be a non-negative finite number, got -1.0"),
    (["dataset=digits", "n_train=2000"], "n_train=2000 is larger than digits's train split (1297 examples); "
                                         "use n_train <= 1297"),
    # names of files come from hashes; a string field with a path in it is refused as an unknown value
    (["dataset=../../etc"], "unknown dataset '../../etc'; allowed: mnist, fashion_mnist"),
    (["nonlinearity=/tmp/relu"], "unknown nonlinearity '/tmp/relu'; allowed: relu"),
]


def refused_line(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    return err[0]


@pytest.mark.parametrize("command", ["sweep", "trial"])
@pytest.mark.parametrize("sets, message", REFUSED)
def test_impossible_values_are_refused_up_front_and_nothing_is_written(tmp_path, capsys, command, sets, message):
    out = tmp_path / "res"
    argv = [command, *(["smoke"] if command == "sweep" else []), "--out", str(out)]
    for assignment in sets:
        argv += ["--set", assignment]
    line = refused_line(capsys, argv + ([] if command == "sweep" else list(TRIAL_FLAGS)))
    assert line.startswith(f"sensitivity {command}: error: ") and message in line, line
    assert listing(tmp_path) == []


@pytest.mark.parametrize("command", ["sweep", "trial"])
def test_a_data_set_not_on_disk_is_refused_with_how_to_get_it(tmp_path, capsys, monkeypatch, command):
    # No download either: every request goes to a proxy that is not there, so the test never fetches CIFAR.
    for proxy in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.setenv(proxy, "http://127.0.0.1:9")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    data_root, out = tmp_path / "data", tmp_path / "res"
    data_root.mkdir()
    argv = [command, *(["smoke"] if command == "sweep" else []), "--out", str(out), "--set", "dataset=cifar10",
            "--data-root", str(data_root)]
    line = refused_line(capsys, argv + ([] if command == "sweep" else list(TRIAL_FLAGS)))
    assert f"data set cifar10 not found under {data_root}" in line
    assert "torchvision.datasets.CIFAR10(root, download=True)" in line and "--data-root" in line  # how to get it
    assert not out.exists() and listing(data_root) == []


def test_a_config_bigger_than_the_trial_memory_is_refused_by_trial(tmp_path, capsys):
    out = tmp_path / "res"
    line = refused_line(capsys, ["trial", "--out", str(out), "--set", "width=65536", "--set", "depth=65",
                                 *TRIAL_FLAGS])
    assert "config needs about" in line and "width=65536, depth=65" in line and "use a smaller width" in line
    assert listing(tmp_path) == []


def test_a_config_bigger_than_the_trial_memory_is_refused_by_sweep(cluster, tmp_path, capsys):
    out = tmp_path / "res"
    line = refused_line(capsys, ["sweep", "smoke", "--out", str(out), "--set", "width=65536", "--set", "depth=65"])
    assert "do not fit the memory of any node" in line and "width=65536, depth=65" in line, line
    assert listing(tmp_path) == []


def test_split_sizes_match_the_data_sets():
    """study.datasets.SPLIT_SIZES, which refuses n_train up front, agrees with the data load_raw returns."""
    from study.datasets import SPLIT_SIZES
    from study.raw_data import DEBIAN_FASHION_MNIST, load_raw

    x_train, _, x_test, _ = load_raw("digits")
    assert SPLIT_SIZES["digits"] == (len(x_train), len(x_test))
    import os

    if os.path.isdir(DEBIAN_FASHION_MNIST):
        x_train, _, x_test, _ = load_raw("fashion_mnist")
        assert SPLIT_SIZES["fashion_mnist"] == (len(x_train), len(x_test))
