"""The sweep's progress table, drawn by a Tune callback (Ray's public `tune.Callback`) from our own metrics.

Tune itself runs silent (RunConfig(verbose=0)); every 15 s and at the end of each chunk this prints a
table of at most 20 Tune trials (running ones first, then errors, then the latest finished) and a first
line counting *study* trials: a pack or a bundle is one Tune trial holding several. Columns: the trial (or pack) id,
its state, where it ran (node IP:pid, reported by the worker), the swept fields, and the result columns.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable

METRIC_COLUMNS = {"status": "result", "train_acc": "train acc", "gap": "loss gap", "jacobian": "jacobian"}
MAX_ROWS = 20
EVERY_S = 15.0


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _rank(trial) -> int:
    """Running trials first, then failed ones, then finished (latest first), pending last."""
    return {"RUNNING": 0, "ERROR": 1, "PENDING": 3}.get(trial.status, 2)


def _members(trial) -> int:
    return int(trial.config["item"].get("n", 1))


def render(trials: list, parameter_columns: tuple[str, ...], grouped: bool) -> str:
    """Header line (study trials by state) and a fixed-width table of at most MAX_ROWS Tune trials."""
    by_state: dict[str, int] = {}
    for trial in trials:
        by_state[trial.status] = by_state.get(trial.status, 0) + _members(trial)
    states = ", ".join(f"{n} {state}" for state, n in sorted(by_state.items()))
    packs = f" in {len(trials)} Tune trials" if grouped else ""
    lines = [f"Number of trials: {sum(by_state.values())}{packs} ({states})"]
    metrics = {**METRIC_COLUMNS, **({"trials": "trials"} if grouped else {})}
    header = ["trial", "state", "loc", *parameter_columns, *metrics.values()]
    order = sorted(range(len(trials)), key=lambda i: (_rank(trials[i]), -i))
    shown = [trials[i] for i in order[:MAX_ROWS]]
    rows = []
    for trial in shown:
        item, result = trial.config["item"], trial.last_result or {}
        rows.append([item["id"], trial.status, _cell(result.get("loc")),
                     *(_cell(item["cfg"].get(name)) for name in parameter_columns),
                     *(_cell(result.get(key)) for key in metrics)])
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows)]
    for row in [header, *rows]:
        lines.append("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip())
    if len(trials) > len(shown):
        lines.append(f"... {len(trials) - len(shown)} more")
    return "\n".join(lines)


def _print(text: str) -> None:
    print(text, flush=True)


def periodic_callback(show: Callable[[list], str], write: Callable[[str], None] = _print):
    """A tune.Callback that writes `show(Tune's trials)` at most every EVERY_S seconds and once at the end of
    the experiment: the one progress mechanism of the sweep's table and of `sensitivity measure`'s line."""
    from ray import tune

    class Periodic(tune.Callback):
        def __init__(self) -> None:
            self.last = time.monotonic()

        def on_step_end(self, iteration: int, trials: list, **info) -> None:
            if time.monotonic() - self.last >= EVERY_S:
                self.last = time.monotonic()
                write(show(trials))

        def on_experiment_end(self, trials: list, **info) -> None:
            write(show(trials))

    return Periodic()


def progress_callback(parameter_columns: tuple[str, ...], grouped: bool, write: Callable[[str], None] = _print):
    """The sweep's table: `render(...)` through periodic_callback."""
    return periodic_callback(lambda trials: render(trials, parameter_columns, grouped), write)
