"""Transitions: exact counts against closed forms and dense sampling; the registered measure on real data."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from study.config import TrialConfig
from study.data import load_dataset, translate
from study.measures import MEASURES, MeasureContext
from study.measures import transition_exact, transition_sampled
from study.measures.jacobian import jacobian_norms
from study.measures.transition_count import (count_transitions_ellipse, count_transitions_ellipses,
                                             count_transitions_path, ellipse_through, pattern_changes)
from study.measures.transition_sampled import START_SAMPLES
from study.measures.transitions import KINDS, trajectories
from study.models import MLP, build_model
from study.nonlinearities import TABLE

torch.set_num_threads(1)
F64 = torch.float64


def random_mlp(n_in: int, width: int, depth: int, nonlinearity: str, seed: int, bias_std: float = 0.5) -> MLP:
    """Float64 MLP with N(0, 1/fan_in) weights and N(0, bias_std^2) biases (non-zero, unlike the init)."""
    g = torch.Generator().manual_seed(seed)
    model = MLP(n_in, width, depth, 3, nonlinearity).double()
    with torch.no_grad():
        for layer in model.layers:
            layer.weight.copy_(torch.randn(layer.weight.shape, generator=g, dtype=F64) / math.sqrt(layer.in_features))
            layer.bias.copy_(torch.randn(layer.bias.shape, generator=g, dtype=F64) * bias_std)
    return model


def gaussian(shape: tuple[int, ...], seed: int, std: float = 1.0) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=F64) * std


def ellipse_samples(c: torch.Tensor, u: torch.Tensor, v: torch.Tensor, n: int) -> torch.Tensor:
    theta = torch.arange(n, dtype=F64) * (2 * math.pi / n)
    return c + torch.outer(theta.cos(), u) + torch.outer(theta.sin(), v)


def polyline_samples(points: torch.Tensor, per_segment: int) -> torch.Tensor:
    s = torch.arange(per_segment, dtype=F64)[:, None] / per_segment
    parts = [p + s * (q - p) for p, q in zip(points[:-1], points[1:])]
    return torch.cat(parts + [points[-1:]])


def test_ellipse_through_passes_through_the_three_points():
    p = gaussian((3, 7), seed=1, std=3.0)
    c, u, v = ellipse_through(*p)
    for k in range(3):
        theta = 2 * math.pi * k / 3
        torch.testing.assert_close(c + u * math.cos(theta) + v * math.sin(theta), p[k], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(c, p.mean(0))


@pytest.mark.parametrize("nonlinearity", [n for n, spec in TABLE.items() if spec.piecewise_linear])
def test_one_hidden_layer_matches_closed_form(nonlinearity):
    """One hidden layer: unit i computes α_i + R_i cos(θ - φ_i) on the whole ellipse, so it meets kink k
    twice (at distinct angles) iff |k - α_i| < R_i: transitions = 2 #{(i, k): |k - α_i| < R_i}."""
    model = random_mlp(5, 200, 2, nonlinearity, seed=2, bias_std=3.0)
    c, u, v = ellipse_through(*gaussian((3, 5), seed=3, std=3.0))
    w, b = model.layers[0].weight, model.layers[0].bias
    alpha, radius = w @ c + b, torch.hypot(w @ u, w @ v)
    reached = torch.stack([(k - alpha).abs() < radius for k in model.kinks])  # [kinks, units]
    expected = 2 * int(reached.sum())
    assert 0 < expected < 2 * reached.numel()  # some units cross, some do not
    if len(model.kinks) == 2:
        assert reached.all(0).any() and (reached.sum(0) == 1).any()  # some units cross both kinks, some one
    result = count_transitions_ellipse(model, c, u, v)
    assert (result.transitions, result.method, result.converged) == (expected, "exact", True)
    assert result.resolution == expected  # one kink event per crossing


def test_crossings_exactly_at_the_start_or_at_a_vertex_count():
    """Unit 0 is put on its kink at p0 (θ = 0, the path's start), a unit j at p1 (the path's inner vertex,
    where it changes sides). On the ellipse, unit 0's crossings fall between the last and the first
    region; on the path, unit j's falls between two segments: both must count (starting on a kink does not)."""
    points = gaussian((3, 5), seed=4, std=3.0)
    c, u, v = ellipse_through(*points)
    model = random_mlp(5, 50, 2, "relu", seed=4, bias_std=3.0)
    w, b = model.layers[0].weight, model.layers[0].bias
    j = int(torch.nonzero((w @ (points[0] - points[1])) * (w @ (points[2] - points[1])) < 0)[1, 0])
    with torch.no_grad():
        b[0], b[j] = -(w[0] @ points[0]), -(w[j] @ points[1])
    alpha, radius = w @ c + b, torch.hypot(w @ u, w @ v)
    assert abs(alpha[0]) < radius[0]
    assert count_transitions_ellipse(model, c, u, v).transitions == 2 * int((alpha.abs() < radius).sum())
    z = points @ w.T + b
    others = torch.ones(50, dtype=torch.bool)
    others[[0, j]] = False
    expected = int(((z[:-1, others] * z[1:, others]) < 0).sum()) + int(z[1, 0] * z[2, 0] < 0) + 1
    assert count_transitions_path(model, points).transitions == expected


@pytest.mark.parametrize("nonlinearity, depth", [("relu", 3), ("relu", 4), ("relu6", 3), ("hardtanh", 4),
                                                 ("hardsigmoid", 3), ("leaky_relu", 3)])
def test_exact_equals_dense_sampling(nonlinearity, depth):
    """Deeper nets: the exact count equals the pattern changes between 2^18 consecutive samples."""
    model = random_mlp(8, 16, depth, nonlinearity, seed=depth, bias_std=1.0)
    c, u, v = ellipse_through(*gaussian((3, 8), seed=10 + depth, std=4.0))
    exact = count_transitions_ellipse(model, c, u, v)
    sampled = pattern_changes(model, ellipse_samples(c, u, v, 2 ** 18), closed=True)
    assert sampled >= 20
    assert exact.transitions == sampled
    assert exact.resolution >= exact.transitions


def test_batch_equals_one_by_one_and_float32_model_is_left_alone():
    model = random_mlp(8, 32, 4, "relu", seed=5).float()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ellipses = [ellipse_through(*gaussian((3, 8), seed=20 + i, std=3.0)) for i in range(3)]
    batch = count_transitions_ellipses(model, *map(torch.stack, zip(*ellipses)))
    single = [count_transitions_ellipse(model, *e) for e in ellipses]
    assert batch == single
    assert len({r.transitions for r in batch}) > 1  # three different ellipses, different counts
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert model.layers[0].weight.dtype == torch.float32


def test_counts_do_not_depend_on_the_chunk_size(monkeypatch):
    """Pieces go through the layers in chunks (memory bound): tiny chunks must give the same counts."""
    model = random_mlp(8, 16, 4, "relu6", seed=6, bias_std=1.0)
    c, u, v = ellipse_through(*gaussian((3, 8), seed=16, std=4.0))
    path = gaussian((5, 8), seed=17, std=4.0)
    reference = count_transitions_ellipse(model, c, u, v), count_transitions_path(model, path)
    assert reference[0].transitions > 20 and reference[1].transitions > 20
    monkeypatch.setattr(transition_exact, "CHUNK", 3)
    assert (count_transitions_ellipse(model, c, u, v), count_transitions_path(model, path)) == reference


@pytest.mark.parametrize("nonlinearity", ["relu", "relu6"])
def test_polyline_one_hidden_layer_matches_closed_form(nonlinearity):
    """On a segment each first-layer pre-activation is affine, so it crosses kink k inside the segment
    iff z - k changes sign between the segment's ends."""
    model = random_mlp(6, 100, 2, nonlinearity, seed=7, bias_std=3.0)
    points = gaussian((6, 6), seed=8, std=3.0)
    z = points @ model.layers[0].weight.T + model.layers[0].bias  # [K, units]
    expected = sum(int((((z[:-1] - k) * (z[1:] - k)) < 0).sum()) for k in model.kinks)
    assert expected > 10
    result = count_transitions_path(model, points)
    assert (result.transitions, result.method, result.converged) == (expected, "exact", True)
    assert count_transitions_path(model, list(points)).transitions == expected


def test_polyline_deeper_net_equals_dense_sampling():
    model = random_mlp(6, 16, 4, "hardtanh", seed=9, bias_std=1.0)
    points = gaussian((5, 6), seed=10, std=3.0)
    exact = count_transitions_path(model, points)
    sampled = pattern_changes(model, polyline_samples(points, 2 ** 16), closed=False)
    assert sampled >= 20
    assert exact.transitions == sampled


def test_smooth_nonlinearity_is_sampled_until_converged():
    """tanh, one hidden layer: the sign of α_i + R_i cos(θ - φ_i) flips twice iff |α_i| < R_i."""
    model = random_mlp(5, 40, 2, "tanh", seed=11, bias_std=2.0)
    c, u, v = ellipse_through(*gaussian((3, 5), seed=12, std=2.0))
    w, b = model.layers[0].weight, model.layers[0].bias
    expected = 2 * int(((w @ c + b).abs() < torch.hypot(w @ u, w @ v)).sum())
    result = count_transitions_ellipse(model, c, u, v)
    assert expected > 10
    assert (result.transitions, result.method, result.converged) == (expected, "sampled", True)
    assert result.resolution >= 4 * START_SAMPLES and result.resolution & (result.resolution - 1) == 0  # a power of 2
    capped = count_transitions_ellipse(model, c, u, v, max_samples=2 * START_SAMPLES)  # one doubling: not enough
    assert (capped.resolution, capped.converged) == (2 * START_SAMPLES, False)


def unit_sign_changes(model: MLP, x: torch.Tensor, closed: bool) -> int:
    """Sum over hidden units of sign changes between consecutive rows of x (a plain forward pass from x)."""
    total, h = 0, x
    for layer in model.layers[:-1]:
        z = layer(h)
        signs = torch.cat([z, z[:1]]) >= 0 if closed else z >= 0
        total += int((signs[1:] != signs[:-1]).sum())
        h = model.act(z)
    return total


@pytest.mark.parametrize("closed", [True, False])
def test_sampled_count_is_the_unit_sign_changes_at_its_final_resolution(closed):
    """The doubling reuses samples and projects the curve through the first layer: the count must equal a
    fresh forward pass from the input at the final resolution."""
    model = random_mlp(7, 24, 4, "sigmoid", seed=21, bias_std=1.0)
    if closed:
        c, u, v = ellipse_through(*gaussian((3, 7), seed=22, std=3.0))
        result = count_transitions_ellipse(model, c, u, v)
        x = ellipse_samples(c, u, v, result.resolution)
    else:
        points = gaussian((5, 7), seed=23, std=3.0)
        result = count_transitions_path(model, points)
        x = polyline_samples(points, result.resolution // (len(points) - 1))
    assert result.converged and result.transitions > 20
    assert result.transitions == unit_sign_changes(model, x, closed)


@pytest.mark.parametrize("closed", [True, False])
@pytest.mark.parametrize("levels_kept", [0, 1])
def test_streamed_recount_equals_reused_samples(monkeypatch, closed, levels_kept):
    """Signs that no longer fit in REUSE_BYTES are dropped and each further level is recounted in chunks
    (here of 3 points, so chunk boundaries and the closing pair are exercised), from the start or after one
    kept doubling: the same count, resolution and convergence."""
    model = random_mlp(7, 24, 4, "tanh", seed=41, bias_std=1.0)
    points = gaussian((3, 7), seed=42, std=3.0)
    count = (lambda: count_transitions_ellipse(model, *ellipse_through(*points))) if closed else \
        (lambda: count_transitions_path(model, points))
    kept = count()
    assert kept.resolution >= 4 * START_SAMPLES  # levels are recounted after the switch
    cap = (2 * START_SAMPLES + 1) * 72 * levels_kept  # 72 hidden units
    monkeypatch.setattr(transition_sampled, "REUSE_BYTES", cap)
    monkeypatch.setattr(transition_sampled, "SIGN_BYTES", 3 * 72)  # 72 hidden units: 3 points a pass
    assert count() == kept and kept.transitions > 20


def test_unit_count_reaches_the_dense_pattern_count_that_sampling_patterns_approaches():
    """Sampling whole patterns merges crossings of different units closer than the spacing; counting each unit's
    sign changes does not, so it converges at a coarse resolution to what pattern sampling reaches only densely."""
    model = random_mlp(6, 64, 3, "tanh", seed=31, bias_std=0.5)
    c, u, v = ellipse_through(*gaussian((3, 6), seed=32, std=4.0))
    result = count_transitions_ellipse(model, c, u, v)
    assert result.converged and result.resolution <= 4096 and result.transitions > 100
    coarse = pattern_changes(model, ellipse_samples(c, u, v, result.resolution))
    dense = pattern_changes(model, ellipse_samples(c, u, v, 2 ** 20))
    assert coarse < result.transitions == dense


def test_smooth_deeper_net_converges_to_dense_count():
    model = random_mlp(6, 12, 3, "tanh", seed=13, bias_std=1.0)
    c, u, v = ellipse_through(*gaussian((3, 6), seed=14, std=3.0))
    result = count_transitions_ellipse(model, c, u, v)
    assert result.converged and result.transitions > 5
    assert result.transitions == pattern_changes(model, ellipse_samples(c, u, v, 2 ** 17))
    path = count_transitions_path(model, gaussian((4, 6), seed=15, std=3.0))
    assert path.method == "sampled" and path.converged


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
