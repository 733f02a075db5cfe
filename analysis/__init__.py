"""Analysis pipeline: load -> filter (saying what was dropped and why) -> statistics -> figures.

Everything here is rebuilt from the Parquet tables written by `study.records` alone.
"""

from analysis.load import FilterResult, filter_trials, load_points, load_table, load_trajectories, load_trials
from study.weights import load_model  # a trials row's kept net: load_model(location, row)

__all__ = ["FilterResult", "filter_trials", "load_model", "load_points", "load_table", "load_trajectories",
           "load_trials"]
