"""The science: one trial as a pure function of its config, with no Ray in it.

    from study import TrialConfig, run_trial, load_dataset
    result = run_trial(TrialConfig(dataset="synthetic"))
    result.record, result.points, result.trajectories, result.model
    result.write("results/one")                       # the three tables and models/<trial_id>.safetensors
    net = load_model("results/one", result.trial_id)  # the kept net (initial=True: at initialization)
"""

from study.config import ConfigError, TrialConfig
from study.data import Dataset, load_dataset
from study.trial import TrialResult, run_trial
from study.weights import WeightsError, load_model
from study.measures import load_plugins

load_plugins()  # measures outside the package ($SENSITIVITY_MEASURES), once everything above is importable

__all__ = ["ConfigError", "Dataset", "TrialConfig", "TrialResult", "WeightsError", "load_dataset", "load_model",
           "run_trial"]
