"""The science: one trial as a pure function of its config, with no Ray in it.

    from study import TrialConfig, run_trial, load_dataset
    result = run_trial(TrialConfig(dataset="synthetic"))
    result.record, result.points, result.trajectories, result.model
"""

from study.config import ConfigError, TrialConfig
from study.data import Dataset, load_dataset
from study.trial import TrialResult, run_trial

__all__ = ["ConfigError", "Dataset", "TrialConfig", "TrialResult", "load_dataset", "run_trial"]
