"""Transition counts (study.measures.transition_count, transition_exact, transition_sampled): exact counts
against closed forms and dense sampling; sampled counts against the unit sign changes they count."""

import math

import pytest
import torch
from transition_paths import ellipse_samples, gaussian, polyline_samples, random_mlp

from study.measures import transition_exact, transition_sampled
from study.measures.transition_count import (count_transitions_ellipse, count_transitions_ellipses,
                                             count_transitions_path, ellipse_through, pattern_changes)
from study.measures.transition_sampled import START_SAMPLES
from study.models import MLP
from study.nonlinearities import TABLE

torch.set_num_threads(1)


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
