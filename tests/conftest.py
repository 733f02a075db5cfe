"""Shared test set-up: one torch thread, a clean per-process data cache around every test."""

from __future__ import annotations

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _fresh_raw_cache():
    """Data sets are cached per process; tests that write their own files need a clean cache."""
    from study.data import load_raw

    load_raw.cache_clear()
    yield
    load_raw.cache_clear()
