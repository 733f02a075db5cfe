import pytest

from study.config import ConfigError, TrialConfig, coerce, parse_assignment


def test_trial_id_is_stable_and_depends_on_every_field():
    a, b = TrialConfig(), TrialConfig()
    assert a.trial_id == b.trial_id and len(a.trial_id) == 16
    ids = {TrialConfig(width=w).trial_id for w in (1, 2, 3)}
    assert len(ids) == 3
    assert TrialConfig(lr=0.01).trial_id != TrialConfig(lr=0.001).trial_id


def test_seeds_derive_from_seed_and_named_fields_only():
    a, b = TrialConfig(lr=0.1), TrialConfig(lr=0.2)
    assert a.seed_for("init") == b.seed_for("init")  # paired trials share initial weights
    assert TrialConfig(seed=1).seed_for("init") != TrialConfig(seed=2).seed_for("init")
    assert a.seed_for("subset", "n_train") != TrialConfig(n_train=10).seed_for("subset", "n_train")


@pytest.mark.parametrize("changes, fragment", [
    ({"nonlinearity": "swish"}, "allowed: relu, relu6, tanh"),
    ({"width": 0}, "width must be a positive integer"),
    ({"depth": 1}, "depth must be at least 2"),
    ({"lr": -0.1}, "lr must be a positive finite number"),
    ({"optimizer": "adagrad"}, "allowed: sgd, momentum, adam, rmsprop, lbfgs"),
    ({"dataset": "imagenet"}, "allowed: mnist, fashion_mnist"),
    ({"random_labels": 1.5}, "random_labels must be a fraction"),
    ({"reg_strength": 1.0}, "reg_strength needs a regularizer"),
    ({"width": 2.5}, "width must be of type int"),
])
def test_bad_values_are_refused_with_one_line(changes, fragment):
    with pytest.raises(ConfigError) as err:
        TrialConfig(**changes)
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_from_dict_coerces_strings_and_refuses_unknown_fields():
    cfg = TrialConfig.from_dict({"width": "256", "lr": "0.01", "augment": "true", "dataset": "digits"})
    assert (cfg.width, cfg.lr, cfg.augment, cfg.dataset) == (256, 0.01, True, "digits")
    with pytest.raises(ConfigError, match="unknown field 'widht'"):
        TrialConfig.from_dict({"widht": 3})
    with pytest.raises(ConfigError, match="unknown field"):
        parse_assignment("foo=1")
    assert parse_assignment("width = 8") == ("width", "8")
    assert coerce("max_steps", "1e3") == 1000
    with pytest.raises(ConfigError, match="must be of type bool"):
        coerce("augment", "maybe")
