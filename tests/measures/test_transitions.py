"""The registered transitions measure (study.measures.transitions) on real data: its rows, record and
trajectories; the counts themselves are tests/measures/test_transition_count.py."""

import numpy as np
import pandas as pd
import pytest
import torch

from study.config import TrialConfig
from study.data import load_dataset, translate
from study.measures import MEASURES, MeasureContext
from study.measures.jacobian import jacobian_norms
from study.measures.transition_count import count_transitions_path, ellipse_through
from study.measures.transitions import KINDS, trajectories
from study.models import build_model
from transition_paths import ellipse_samples

torch.set_num_threads(1)


# -- the registered measure --------------------------------------------------------------------

COLUMNS = ["kind", "index", "transitions", "method", "resolution", "converged", "length", "jacobian_mean",
           "jacobian_max"]
RECORD_KEYS = {"measure.transitions_train", "measure.transitions_test", "measure.transitions_random",
               "measure.transitions_translation", "measure.jacobian_trajectory_train",
               "measure.jacobian_trajectory_random"}


def context(**changes) -> MeasureContext:
    cfg = TrialConfig(**{"dataset": "digits", "n_train": 100, "n_test": 50, "width": 16, "depth": 3,
                         "n_trajectories": 2, "trajectory_points": 8, **changes})
    data = load_dataset(cfg)
    model = build_model(cfg, data.n_features, data.n_classes).eval()
    return MeasureContext(cfg=cfg, model=model, data=data, device=torch.device("cpu"))


def test_measure_on_digits_rows_and_record():
    ctx = context()
    before = {k: v.clone() for k, v in ctx.model.state_dict().items()}
    out = MEASURES["transitions"](ctx)
    table = out.trajectories
    assert list(table.columns) == COLUMNS
    assert table.kind.value_counts().to_dict() == {kind: 2 for kind in KINDS}
    assert all(sorted(group) == [0, 1] for _, group in table.groupby("kind")["index"])
    assert (table.method == "exact").all() and table.converged.all()
    assert np.isfinite(table[["transitions", "length", "jacobian_mean", "jacobian_max"]].to_numpy(float)).all()
    assert (table.transitions > 0).any() and (table.length > 0).all()
    assert (table.jacobian_max >= table.jacobian_mean).all() and (table.jacobian_mean > 0).all()
    assert set(out.record) == RECORD_KEYS and all(np.isfinite(v) for v in out.record.values())
    train = table[table.kind.str.startswith("train")]
    assert out.record["measure.transitions_train"] == pytest.approx(train.transitions.mean())
    assert out.record["measure.jacobian_trajectory_random"] == pytest.approx(
        table[table.kind == "random"].jacobian_mean.mean())
    assert all(torch.equal(before[k], v) for k, v in ctx.model.state_dict().items())
    pd.testing.assert_frame_equal(MEASURES["transitions"](ctx).trajectories, table)  # deterministic


def test_trajectories_are_what_their_kind_says():
    ctx = context(n_trajectories=3, standardize="none")  # pixels in [0, 1]: their scale is not 1
    trajs = trajectories(ctx)
    x, y = ctx.data.x_train, ctx.data.y_train_true

    def labels(points):  # the training labels of points that are training rows
        return [int(y[(x == p).all(1).nonzero()[0, 0]]) for p in points]

    for t in trajs:
        if t.kind == "train_same_class":
            assert t.closed and len(set(labels(t.points))) == 1
        elif t.kind == "train_diff_class":
            assert t.closed and len(set(labels(t.points))) == 3
        elif t.kind == "test":
            assert all((ctx.data.x_test == p).all(1).any() for p in t.points)
        elif t.kind == "translation":
            assert not t.closed and t.points.shape == (7, 64)
            labels(t.points[3:4])  # the unshifted point is a training point
            torch.testing.assert_close(t.points[4:5], translate(t.points[3:4], (1, 8, 8), 1))
    random = torch.cat([t.points for t in trajs if t.kind == "random"])
    data_std = x.double().pow(2).mean().sqrt()
    assert 0.8 < float(random.std() / data_std) < 1.2
    again = trajectories(ctx)
    assert all(torch.equal(a.points, b.points) for a, b in zip(trajs, again))


def test_measure_jacobian_and_length_along_an_ellipse():
    """Row values against direct computations: Jacobian norms at the equally spaced θ, chord-sum length."""
    ctx = context(n_trajectories=1, trajectory_points=16)
    table = MEASURES["transitions"](ctx).trajectories
    traj = next(t for t in trajectories(ctx) if t.kind == "random")
    row = table[table.kind == "random"].iloc[0]
    c, u, v = ellipse_through(*traj.points.double())
    norms = jacobian_norms(ctx.model, ellipse_samples(c, u, v, 16).float()).jacobian
    assert row.jacobian_mean == pytest.approx(float(norms.mean()), rel=1e-5)
    assert row.jacobian_max == pytest.approx(float(norms.max()), rel=1e-5)
    dense = ellipse_samples(c, u, v, 100_000)
    chords = (torch.roll(dense, -1, 0) - dense).norm(dim=1).sum()
    assert row.length == pytest.approx(float(chords), rel=1e-6)
    transl = table[table.kind == "translation"].iloc[0]
    path = next(t for t in trajectories(ctx) if t.kind == "translation").points.double()
    assert transl.length == pytest.approx(float((path[1:] - path[:-1]).norm(dim=1).sum()))
    assert transl.transitions == count_transitions_path(ctx.model, path).transitions


def test_no_trajectories_and_no_images():
    empty = MEASURES["transitions"](context(n_trajectories=0))
    assert empty.trajectories is None and set(empty.record) == RECORD_KEYS
    assert all(v is None for v in empty.record.values())
    out = MEASURES["transitions"](context(dataset="synthetic", nonlinearity="tanh", width=8))
    assert "translation" not in set(out.trajectories.kind) and len(out.trajectories) == 8
    assert out.record["measure.transitions_translation"] is None
    assert out.record["measure.transitions_test"] is not None
    assert (out.trajectories.method == "sampled").all() and out.trajectories.converged.all()
