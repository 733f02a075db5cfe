"""Analysis pipeline: load -> filter (saying what was dropped and why) -> statistics -> figures.

Everything here is rebuilt from the Parquet tables written by `study.records` alone.
"""

from analysis.load import FilterResult, filter_trials, load_points, load_table, load_trajectories, load_trials

__all__ = ["FilterResult", "filter_trials", "load_points", "load_table", "load_trajectories", "load_trials"]
