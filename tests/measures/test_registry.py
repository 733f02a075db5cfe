"""The measure registry: every module of study.measures is found, each measure writes exactly the columns it
declares, and the schemas are built from those declarations (study.schema)."""

import pkgutil
import sys

import pytest
import torch

import study.measures as measures
from study.config import TrialConfig
from study.data import load_dataset
from study.measures import COLUMNS, MEASURES, MeasureContext, declared_columns, register
from study.models import build_model
from study.schema import POINT_KEY, TRAJECTORY_KEY, columns

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def context():
    cfg = TrialConfig(dataset="digits", n_train=60, n_test=40, width=12, depth=2, n_trajectories=1,
                      trajectory_points=6, transition_samples=1024)
    data = load_dataset(cfg)
    model = build_model(cfg, data.n_features, data.n_classes).eval()
    return MeasureContext(cfg=cfg, model=model, data=data, device=torch.device("cpu"))


def test_every_module_of_the_package_is_imported():
    names = {m.name for m in pkgutil.iter_modules(measures.__path__)}
    shipped = {"jacobian", "transitions", "baselines", "gap", "pointwise", "init_distance", "inverse_margin",
               "fisher_rao", "pacbayes_flatness", "pacbayes_magnitude"}
    assert shipped <= names
    assert all(f"study.measures.{name}" in sys.modules for name in names)
    assert set(MEASURES) == set(COLUMNS) == shipped


@pytest.mark.parametrize("name", sorted(MEASURES))
def test_a_measure_writes_exactly_the_columns_it_declares(context, name):
    out = MEASURES[name](context)
    declared = COLUMNS[name]
    assert set(out.record) == set(declared["trials"])
    points = set() if out.points is None else set(out.points.columns) - set(POINT_KEY)
    trajectories = set() if out.trajectories is None else set(out.trajectories.columns) - set(TRAJECTORY_KEY)
    assert points == set(declared["points"]) and trajectories == set(declared["trajectories"])


def test_the_schemas_hold_the_declared_columns_with_their_types():
    for table in ("trials", "points", "trajectories"):
        schema = columns(table)
        for column, kind in declared_columns(table).items():
            assert str(schema[column]) == {"float": "double", "int": "int64", "bool": "bool", "str": "string"}[kind]
    assert "measure.jacobian_test" in columns("trials") and "jacobian" in columns("points")


def test_a_column_declared_by_two_measures_and_a_name_registered_twice_are_refused():
    try:
        register("probe_a", record={"measure.probe": "float"})(lambda ctx: None)
        register("probe_b", record={"measure.probe": "float"})(lambda ctx: None)
        with pytest.raises(ValueError, match="declared by two measures"):
            declared_columns("trials")
        with pytest.raises(ValueError, match="registered twice"):
            register("probe_a")(lambda ctx: None)
    finally:
        for probe in ("probe_a", "probe_b"):
            MEASURES.pop(probe, None)
            COLUMNS.pop(probe, None)
    assert "measure.probe" not in declared_columns("trials")
