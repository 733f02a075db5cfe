"""What the progress lines say, counted in study trials (a pack or a measure batch is one Tune trial holding
several), and the one periodic callback both commands print through."""

from types import SimpleNamespace

from sweeps import progress
from sweeps.progress import periodic_callback, render
from sweeps.remeasure import progress_line


def _trial(status, n=1, id_="t", cfg=None, result=None):
    item = {"id": id_, "n": n, "cfg": cfg or {"width": 8}}
    return SimpleNamespace(status=status, config={"item": item}, last_result=result or {})


def test_the_table_counts_study_trials_and_shows_running_ones_first():
    trials = [_trial("TERMINATED", 3, "pack3-a", result={"status": "ok:3", "trials": 3}),
              _trial("RUNNING", 2, "pack2-b"), _trial("PENDING", 1, "c")]
    text = render(trials, ("width",), grouped=True)
    first, header, *rows = text.splitlines()
    assert first == "Number of trials: 6 in 3 Tune trials (1 PENDING, 2 RUNNING, 3 TERMINATED)"
    assert header.split()[:4] == ["trial", "state", "loc", "width"] and rows[0].startswith("pack2-b")


def test_the_measure_line_counts_the_trials_of_each_batch():
    trials = [_trial("TERMINATED", 4), _trial("RUNNING", 3), _trial("ERROR", 2), _trial("PENDING", 5)]
    assert progress_line(trials, 14) == "measure: 4 of 14 trials done, 3 running, 2 failed"
    assert progress_line(trials[:2], 7) == "measure: 4 of 7 trials done, 3 running"


def test_the_callback_writes_at_most_every_period_and_at_the_end(monkeypatch):
    written = []
    clock = iter([0.0, 1.0, 20.0, 21.0])
    monkeypatch.setattr(progress.time, "monotonic", lambda: next(clock))
    callback = periodic_callback(lambda trials: f"{len(trials)} trials", written.append)  # reads the clock: 0.0
    callback.on_step_end(1, [1])          # 1.0: too soon
    callback.on_step_end(2, [1, 2])       # 20.0: written, the clock read again (21.0)
    callback.on_experiment_end([1, 2, 3])
    assert written == ["2 trials", "3 trials"]
