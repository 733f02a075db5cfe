"""The PAC-Bayes flatness measures against an independent computation: each perturbed net built as a copy of
the model with its noise added parameter by parameter, and evaluated one at a time."""

import copy
import math

import numpy as np
import pytest
import torch

from study import TrialConfig, load_dataset, run_trial
from study.measures import flatness_search as fs
from study.measures.flatness_search import flatness_scale, noise_draws, perturbed_error

FAST = dict(dataset="digits", n_train=120, n_test=60, width=16, depth=3, max_steps=200, eval_every=50, lr=0.01,
            n_trajectories=0, nonlinearity="relu")


@pytest.fixture(scope="module")
def trained():
    result = run_trial(TrialConfig(**FAST))
    return result, load_dataset(result.config)


def loop_error(model, x, y, sigma, seed, magnitude, samples=fs.SAMPLES):
    """E_u[L(w + u)] by copies of the net, one draw at a time (numpy float64 for the scale)."""
    noise = noise_draws({n: p.shape for n, p in model.named_parameters()}, seed, samples)
    errors = []
    for k in range(samples):
        net = copy.deepcopy(model)
        with torch.no_grad():
            for name, p in net.named_parameters():
                w = p.detach().double().numpy()
                scale = np.sqrt((sigma * w) ** 2 + fs.MAGNITUDE_EPS ** 2) if magnitude else np.full_like(w, sigma)
                p.add_(torch.from_numpy(scale).float() * noise[name][k])
            errors.append(float((net(x).argmax(1) != y).float().mean()))
    return float(np.mean(errors))


def step_ratio():
    return math.exp((math.log(fs.SIGMA_HI) - math.log(fs.SIGMA_LO)) / 2 ** fs.STEPS)


@pytest.mark.parametrize("magnitude", [False, True])
def test_the_vmapped_mean_error_equals_copies_one_at_a_time(trained, magnitude):
    result, data = trained
    params = {n: p.detach() for n, p in result.model.named_parameters()}
    noise = noise_draws({n: p.shape for n, p in params.items()}, 7, fs.SAMPLES)
    for sigma in (0.01, 0.3, 2.0):
        def scale(w, s=sigma):
            return torch.sqrt((s * w) ** 2 + fs.MAGNITUDE_EPS ** 2) if magnitude else torch.full_like(w, s)
        fast = perturbed_error(result.model, data.x_train, data.y_train, params, noise, scale)
        slow = loop_error(result.model, data.x_train, data.y_train, sigma, 7, magnitude)
        assert fast == pytest.approx(slow, abs=1e-6)


@pytest.mark.parametrize("magnitude", [False, True])
def test_the_bisection_brackets_the_largest_sigma_within_the_deviation(trained, magnitude):
    result, data = trained
    x, y = data.x_train, data.y_train
    found = flatness_scale(result.model, x, y, seed=3, magnitude=magnitude)
    assert found.base_error == 0.0 and found.samples == fs.SAMPLES and found.points == len(y)
    assert fs.SIGMA_LO < found.sigma < fs.SIGMA_HI
    assert loop_error(result.model, x, y, found.sigma, 3, magnitude) <= fs.DEVIATION  # sigma' keeps the bound
    assert loop_error(result.model, x, y, found.sigma * step_ratio() * 1.0001, 3, magnitude) > fs.DEVIATION
    assert found.flatness == pytest.approx(1 / found.sigma ** 2)


def test_magnitude_aware_flatness_ignores_a_rescaling_that_keeps_the_function(trained):
    """ReLU is positively homogeneous: layer 1 times c and layer 2 divided by c is the same function. The
    magnitude-aware noise scales with it (up to the 1e-3 floor), the plain noise does not."""
    result, data = trained
    x, y = data.x_train, data.y_train
    rescaled = copy.deepcopy(result.model)
    with torch.no_grad():
        rescaled.layers[0].weight.mul_(4.0)
        rescaled.layers[0].bias.mul_(4.0)
        rescaled.layers[1].weight.div_(4.0)
    assert torch.equal(rescaled(x).argmax(1), result.model(x).argmax(1))
    plain = [flatness_scale(m, x, y, seed=5, magnitude=False).sigma for m in (result.model, rescaled)]
    aware = [flatness_scale(m, x, y, seed=5, magnitude=True).sigma for m in (result.model, rescaled)]
    assert aware[1] == pytest.approx(aware[0], rel=0.1)
    assert abs(math.log(plain[1] / plain[0])) > abs(math.log(aware[1] / aware[0])) + 0.1


def test_the_search_reports_its_edges_and_bounds_its_points(trained):
    result, data = trained
    x, y = data.x_train, data.y_train
    constant = torch.nn.Sequential(torch.nn.Linear(x.shape[1], 10))
    with torch.no_grad():
        constant[0].weight.zero_()
        constant[0].bias.copy_(torch.arange(10.0) * 1e6)  # class 9 wins under any noise up to sigma 10
    flat = flatness_scale(constant, x, y, seed=0, magnitude=False)
    assert flat.sigma == fs.SIGMA_HI and flat.flatness == pytest.approx(0.01)
    big = (torch.cat([x] * 20), torch.cat([y] * 20))
    assert flatness_scale(result.model, *big, seed=0, magnitude=False, steps=1).points == fs.MAX_POINTS


def test_a_large_train_set_is_estimated_on_a_seeded_random_subset(trained):
    result, data = trained
    assert fs.estimation_points(fs.MAX_POINTS, 0) is None
    keep = fs.estimation_points(5000, 3)
    assert len(keep) == fs.MAX_POINTS == len(set(keep.tolist())) and torch.equal(keep, keep.sort().values)
    assert keep.max() > 4000 and keep.min() < 1000 and torch.equal(keep, fs.estimation_points(5000, 3))
    # sorted by class, as some data sets are: the subset still holds every class, and the search uses it
    order = torch.argsort(data.y_train, stable=True)
    x, y = data.x_train[order].repeat_interleave(40, dim=0), data.y_train[order].repeat_interleave(40)
    assert len(set(y[:fs.MAX_POINTS].tolist())) < 3  # the first points: one or two classes
    picked = fs.estimation_points(len(y), 11)
    assert set(y[picked].tolist()) == set(data.y_train.tolist())
    found = flatness_scale(result.model, x, y, seed=11, magnitude=False)
    assert loop_error(result.model, x[picked], y[picked], found.sigma, 11, False) <= fs.DEVIATION


def test_the_trial_records_both_measures_and_their_sample_count(trained):
    result, data = trained
    rec = result.record
    assert rec["flatness.samples"] == fs.SAMPLES and rec["flatness.points"] == len(data.y_train)
    assert rec["measure.pacbayes_flatness"] == pytest.approx(1 / rec["flatness.sigma"] ** 2)
    assert rec["measure.pacbayes_mag_flatness"] == pytest.approx(1 / rec["flatness.mag_sigma"] ** 2)
    again = flatness_scale(result.model, data.x_train, data.y_train, result.config.seed_for("flatness"), False)
    assert again.sigma == rec["flatness.sigma"]  # same config, same number


def test_the_early_out_stops_only_above_its_bound(trained):
    result, data = trained
    params = {n: p.detach() for n, p in result.model.named_parameters()}
    noise = noise_draws({n: p.shape for n, p in params.items()}, 1, fs.SAMPLES)

    def scale(w):
        return torch.full_like(w, 3.0)  # far too large: every draw errs on most points
    full = perturbed_error(result.model, data.x_train, data.y_train, params, noise, scale)
    early = perturbed_error(result.model, data.x_train, data.y_train, params, noise, scale, above=0.1)
    assert full > 0.5 and 0.1 < early < full  # stopped after the first chunk, already above
    assert perturbed_error(result.model, data.x_train, data.y_train, params, noise, scale, above=full) == full
