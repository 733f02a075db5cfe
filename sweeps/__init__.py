"""Sweeps: declarative presets of trials (sweeps.presets), a seeded sample of configs (sweeps.sampling),
and their execution on Ray Tune (sweeps.runner, sweeps.worker), driven by `sensitivity sweep` (sweeps.cli).
sweeps.feedback selects the base configs of an intervention sweep from a finished one (--from DIR --top K).

The Parquet records under the output location are the source of truth for what is done, so a sweep
can be relaunched at any time and runs only what is missing.
"""
