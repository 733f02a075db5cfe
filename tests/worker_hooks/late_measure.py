"""A measure registered after a sweep, as a user registers one: a module named in SENSITIVITY_MEASURES, imported by
every process of `sensitivity measure` (the driver and Ray's workers, tests/worker_hooks being on their path).

`late_probe`: the mean over test points of the squared norm of the logits, ||h(x)||^2, and the same per point.

Two switches for the tests, read from the environment (both travel to Ray's workers: SENSITIVITY_ prefix):
- SENSITIVITY_TEST_FORBID_TRAINING=FILE: every training entry point (study.train.train, as study.trial and
  study.packed hold it, study.packed.train_packed, and torch's backward) appends a line to FILE and raises;
- SENSITIVITY_TEST_HOLD_DIR=DIR: while DIR/hold exists, late_probe writes DIR/started-<pid> and waits.
"""

from __future__ import annotations

import os
import time

import pandas as pd

from study.measures import MeasureOutput, register

NAME = "late_probe"
FORBID_ENV, HOLD_ENV = "SENSITIVITY_TEST_FORBID_TRAINING", "SENSITIVITY_TEST_HOLD_DIR"


@register(NAME, record={"measure.late_probe_test": "float"}, points={"late_probe": "float"})
def measure(ctx):
    hold = os.environ.get(HOLD_ENV)
    if hold:
        with open(os.path.join(hold, f"started-{os.getpid()}"), "w"):
            pass
        while os.path.exists(os.path.join(hold, "hold")):
            time.sleep(0.05)
    per_point = ctx.logits("test").double().pow(2).sum(dim=1).cpu()
    points = pd.DataFrame({"split": "test", "index": range(len(per_point)), "late_probe": per_point.numpy()})
    return MeasureOutput(record={"measure.late_probe_test": float(per_point.mean())}, points=points)


def forbid_training(marker: str) -> None:
    """Make every way to train a net record itself in `marker` and raise."""
    import torch

    import study.packed
    import study.train
    import study.trial

    def refuse(*args, **kwargs):
        with open(marker, "a") as handle:
            handle.write(f"training attempted in pid {os.getpid()}\n")
        raise RuntimeError("training is forbidden in this test")
    study.train.train = study.trial.train = refuse
    study.packed.train_packed = refuse
    torch.Tensor.backward = refuse


if os.environ.get(FORBID_ENV):
    forbid_training(os.environ[FORBID_ENV])
