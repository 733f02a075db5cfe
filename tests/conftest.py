"""Shared test set-up: one torch thread, a clean per-process data cache around every test, and the
sweep fault injection (tests/worker_hooks) in every process the tests start, Ray's workers included."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest
import torch

HOOKS = Path(__file__).parent / "worker_hooks"
# Set before any Ray starts, so every Ray process inherits both (and so the subprocess drivers).
os.environ.setdefault("SWEEP_FAULTS_DIR", tempfile.mkdtemp(prefix="sweep-faults-"))
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HOOKS), os.environ.get("PYTHONPATH")]))
sys.path.insert(0, str(HOOKS))

from sweep_faults import Faults  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _fresh_raw_cache():
    """Data sets are cached per process; tests that write their own files need a clean cache."""
    from study.raw_data import load_raw

    load_raw.cache_clear()
    yield
    load_raw.cache_clear()


@pytest.fixture
def faults():
    """Hold, crash and watch sweep trials from the test (tests/worker_hooks/sweep_faults.py); cleared
    (every held trial let go) after the test."""
    control = Faults(os.environ["SWEEP_FAULTS_DIR"])
    control.clear()
    yield control
    control.clear()
