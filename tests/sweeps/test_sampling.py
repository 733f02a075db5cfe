import pytest

from study.config import ConfigError
from study.resources import GIB, estimate_bytes
from sweeps.presets import PAIRS, PAPER, PRESETS, QUICK, SMOKE, describe, get_preset
from sweeps.sampling import parse_overrides, sample


def ids(drawn):
    return [t.trial_id for t in drawn.trials]


def test_sample_is_a_seeded_function_of_preset_overrides_seed_and_n():
    a = sample(SMOKE, {}, seed=0, n=30)
    assert ids(a) == ids(sample(SMOKE, {}, seed=0, n=30))
    assert len(set(ids(a))) == 30 and not a.exhausted
    assert set(ids(a)).isdisjoint(ids(sample(SMOKE, {}, seed=1, n=30)))
    assert ids(sample(SMOKE, {}, seed=0, n=50))[:30] == ids(a)  # raising N extends the sweep
    assert a.sweep_id == sample(SMOKE, {}, 0, 30).sweep_id != sample(SMOKE, {}, 0, 31).sweep_id
    narrowed = sample(SMOKE, parse_overrides(["width=8"]), seed=0, n=30)
    assert set(ids(narrowed)) != set(ids(a))


def test_set_pins_a_field_or_narrows_its_choices():
    drawn = sample(SMOKE, parse_overrides(["width=32", "nonlinearity=relu,tanh", "optimizer=adam,sgd"]), 0, 60)
    assert {t.config.width for t in drawn.trials} == {32}
    assert {t.config.nonlinearity for t in drawn.trials} == {"relu", "tanh"}
    assert {t.config.optimizer for t in drawn.trials} == {"adam", "sgd"}
    # lr follows the optimizer as the preset links it, unless --set pins it
    assert {(t.config.optimizer, t.config.lr) for t in drawn.trials} == {("adam", 0.01), ("sgd", 0.1)}
    pinned = sample(SMOKE, parse_overrides(["lr=0.2"]), 0, 20)
    assert {t.config.lr for t in pinned.trials} == {0.2}
    other_field = sample(SMOKE, parse_overrides(["n_train=100,200"]), 0, 40)
    assert {t.config.n_train for t in other_field.trials} == {100, 200}


def test_n_counts_distinct_trials_and_a_small_space_is_exhausted():
    overrides = parse_overrides(["seed=7", "width=8", "depth=2", "nonlinearity=relu", "optimizer=adam",
                                 "init_scale=1", "random_labels=0,1"])
    drawn = sample(SMOKE, overrides, 0, 10)
    assert drawn.exhausted and len(drawn.trials) == 2 == len(set(ids(drawn)))
    assert {t.config.random_labels for t in drawn.trials} == {0.0, 1.0}


@pytest.mark.parametrize("assignments, fragment", [
    (["colour=red"], "unknown field 'colour'"),
    (["width=abc"], "width must be of type int"),
    (["width=8,"], "needs a value"),
    (["nonlinearity=relu,swish"], "unknown nonlinearity 'swish'"),  # refused although N=1 may never draw it
    (["width=0"], "width must be a positive integer"),
    (["reg_strength=0.5"], "reg_strength needs a regularizer"),
])
def test_bad_overrides_are_refused(assignments, fragment):
    with pytest.raises(ConfigError, match=fragment):
        sample(SMOKE, parse_overrides(assignments), 0, 1)


def test_unknown_preset_lists_the_presets():
    with pytest.raises(ConfigError, match="presets: smoke, quick, paper, pairs"):
        get_preset("huge")


def test_pairs_differ_in_one_binary_factor_and_no_trial_is_in_two_pairs():
    drawn = sample(PAIRS, {}, 0, 200)
    assert len(drawn.trials) == 400 == len(set(ids(drawn)))
    by_pair = {}
    for t in drawn.trials:
        by_pair.setdefault(t.pair_id, []).append(t)
    assert len(by_pair) == 200 and all(len(p) == 2 for p in by_pair.values())
    factors = set()
    for a, b in by_pair.values():
        assert a.pair_factor == b.pair_factor
        diff = {k for k, v in a.config.canonical().items() if b.config.canonical()[k] != v}
        assert diff == {a.pair_factor}
        factors.add(a.pair_factor)
        if a.pair_factor == "nonlinearity":
            assert a.config.nonlinearity == "relu" and b.config.nonlinearity != "relu"
        if a.pair_factor == "full_batch":
            assert a.config.optimizer != "lbfgs"
    assert factors == {"random_labels", "augment", "nonlinearity", "full_batch"}


def test_pairs_take_the_factors_in_turn_within_each_factor_s_restrictions():
    drawn = sample(PAIRS, {}, 0, 60)
    firsts = drawn.trials[::2]
    counts = {}
    for t in firsts:
        counts[t.pair_factor] = counts.get(t.pair_factor, 0) + 1
    assert counts == {"random_labels": 15, "augment": 15, "nonlinearity": 15, "full_batch": 15}
    for t in firsts:
        cfg = t.config
        assert cfg.nonlinearity != "hardsigmoid" and cfg.augment_shift == 1
        if t.pair_factor == "augment":
            assert cfg.random_labels == 0.0 and cfg.optimizer != "lbfgs"
        if t.pair_factor == "random_labels":
            assert cfg.optimizer != "sgd"
        if t.pair_factor == "full_batch":
            assert cfg.optimizer != "lbfgs"
    # A --set that leaves a factor no base drops that factor only; one that leaves none is refused.
    lbfgs = sample(PAIRS, parse_overrides(["optimizer=lbfgs"]), 0, 8)
    assert {t.pair_factor for t in lbfgs.trials} == {"random_labels", "nonlinearity"}
    with pytest.raises(ConfigError, match="pins every paired factor"):
        sample(PAIRS, parse_overrides(["optimizer=lbfgs", "random_labels=1", "nonlinearity=tanh"]), 0, 4)


def test_pairs_factors_follow_set():
    drawn = sample(PAIRS, parse_overrides(["random_labels=0", "augment=false", "full_batch=false"]), 0, 20)
    assert {t.pair_factor for t in drawn.trials} == {"nonlinearity"}
    narrowed = sample(PAIRS, parse_overrides(["random_labels=0", "augment=false", "full_batch=false",
                                              "nonlinearity=relu,tanh"]), 0, 20)
    assert {t.config.nonlinearity for t in narrowed.trials} == {"relu", "tanh"}
    with pytest.raises(ConfigError, match="pins every paired factor"):
        sample(PAIRS, parse_overrides(["random_labels=0", "augment=false", "full_batch=false",
                                       "nonlinearity=tanh"]), 0, 5)


def test_paper_preset_is_the_published_grid_under_its_memory_cap():
    assert PAPER.factors["width"] == tuple(2 ** k for k in range(17))
    assert PAPER.factors["depth"] == (2, 3, 5, 9, 17, 33, 65)
    assert PAPER.factors["lr"] == (0.01, 0.005, 0.0005) and PAPER.factors["batch_size"] == (128, 512)
    assert PAPER.factors["init_scale"] == (0.5, 1.0, 4.0, 8.0) and PAPER.factors["seed"] == tuple(range(1, 9))
    drawn = sample(PAPER, {}, 0, 300)
    assert all(estimate_bytes(t.config) <= 64 * GIB for t in drawn.trials)
    for t in drawn.trials:
        assert t.config.max_steps == (2684 if t.config.optimizer == "lbfgs" else 2 ** 19)
        assert t.config.target_accuracy == (0.999 if t.config.dataset == "cifar100" else 1.0)
    assert {t.config.dataset for t in drawn.trials} == {"cifar10", "cifar100", "mnist", "fashion_mnist"}


def test_every_preset_is_described_and_samples_valid_configs():
    for preset in PRESETS.values():
        text = describe(preset)
        assert text.startswith(preset.name) and "default N" in text
        assert len(sample(preset, {}, 0, 5).trials) >= 5
    assert {t.config.nonlinearity for t in sample(QUICK, {}, 0, 100).trials} == {
        "relu", "relu6", "tanh", "hardtanh", "hardsigmoid"}


def test_the_grid_preset_runs_every_combination_with_the_same_seeds():
    from sweeps.presets import GRID

    drawn = sample(GRID, {}, 0, 3)
    configs = [t.config for t in drawn.trials]
    axes = ("width", "depth", "nonlinearity", "optimizer", "init_scale", "batch_size")
    assert len(configs) == 64 * 3 and not drawn.exhausted and len({c.trial_id for c in configs}) == len(configs)
    seeds = {c.seed for c in configs}
    assert len(seeds) == 3
    keys = {(tuple(getattr(c, a) for a in axes), c.seed) for c in configs}
    for c in configs:  # every trial has, for each axis, the trial that differs from it in that axis alone
        assert c.lr == {"sgd": 0.1, "adam": 0.002}[c.optimizer] and c.random_labels == 0.0
        for i, axis in enumerate(axes):
            other = next(v for v in GRID.factors[axis] if v != getattr(c, axis))
            flipped = tuple(other if j == i else getattr(c, a) for j, a in enumerate(axes))
            assert (flipped, c.seed) in keys
    assert sample(GRID, {}, 0, 3).trials == drawn.trials  # the same command asks for the same trials
    assert {t.config.seed for t in sample(GRID, {}, 1, 3).trials} != seeds  # --seed draws other seeds
    narrowed = sample(GRID, parse_overrides(["width=128", "optimizer=adam"]), 0, 2)
    assert len(narrowed.trials) == 16 * 2 and {t.config.width for t in narrowed.trials} == {128}
    assert sample(GRID, parse_overrides(["seed=7"]), 0, 3).exhausted  # one pinned seed: fewer than N


def test_a_larger_grid_keeps_the_trials_of_a_smaller_one():
    from sweeps.presets import GRID

    small = {t.trial_id for t in sample(GRID, {}, 0, 2).trials}
    assert small < {t.trial_id for t in sample(GRID, {}, 0, 5).trials}
