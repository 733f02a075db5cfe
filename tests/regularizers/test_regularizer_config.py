import pytest

from study.config import ConfigError, TrialConfig
from study.regularizer_table import TABLE
from study.regularizers import make_penalty, penalty_class
from study.regularizers.base import Regularizer


@pytest.mark.parametrize("changes, fragment", [
    (dict(regularizer="jacobian", reg_strength=-1.0), "reg_strength must be a non-negative finite number"),
    (dict(regularizer="jacobian", reg_strength=float("inf")), "reg_strength must be a non-negative finite number"),
    (dict(regularizer="jacobian"), "regularizer jacobian needs reg_strength > 0"),
    (dict(regularizer="jacobian_proj"), "regularizer jacobian_proj needs reg_strength > 0"),
    (dict(regularizer="bias_jacobian"), "regularizer bias_jacobian needs reg_strength > 0"),
    (dict(regularizer="jacobian_matching", noise_std=0.1), "regularizer jacobian_matching needs reg_strength > 0"),
    (dict(regularizer="input_noise"), "regularizer input_noise needs noise_std > 0"),
    (dict(regularizer="input_noise", noise_std=-0.1), "noise_std must be a non-negative finite number"),
    (dict(regularizer="jacobian_matching", reg_strength=1.0), "regularizer jacobian_matching needs noise_std > 0"),
    (dict(regularizer="input_noise", noise_std=0.1, reg_strength=1.0), "input_noise is set by noise_std alone"),
    (dict(regularizer="jacobian", reg_strength=1.0, noise_std=0.1), "noise_std applies only to regularizer"),
    (dict(noise_std=0.1), "noise_std applies only to regularizer"),
    (dict(reg_strength=1.0), "reg_strength needs a regularizer"),
    (dict(reg_target="softmax"), "reg_target applies only to regularizer"),
    (dict(regularizer="input_noise", noise_std=0.1, reg_target="softmax"), "reg_target applies only"),
    (dict(regularizer="jacobian", reg_strength=1.0, reg_target="probs"), "allowed: logits, softmax"),
    (dict(regularizer="jacobian", reg_strength=1.0, reg_projections=4), "reg_projections applies only to"),
    (dict(regularizer="jacobian_proj", reg_strength=1.0, reg_projections=0), "reg_projections must be a positive"),
    (dict(regularizer="jacobian_proj", reg_strength=1.0, optimizer="lbfgs"), "breaks L-BFGS's line search"),
    (dict(regularizer="input_noise", noise_std=0.1, optimizer="lbfgs"), "breaks L-BFGS's line search"),
    (dict(regularizer="weight_decay"), "allowed: none, jacobian, jacobian_proj"),
])
def test_bad_settings_are_one_line_config_errors(changes, fragment):
    with pytest.raises(ConfigError) as err:
        TrialConfig(**changes)
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_from_strings_as_the_cli_gives_them():
    with pytest.raises(ConfigError, match="needs noise_std > 0"):
        TrialConfig.from_dict({"regularizer": "input_noise", "noise_std": "0"})
    cfg = TrialConfig.from_dict({"regularizer": "jacobian_proj", "reg_strength": "0.01", "reg_projections": "2"})
    assert (cfg.reg_strength, cfg.reg_projections) == (0.01, 2)


@pytest.mark.parametrize("changes", [
    dict(regularizer="jacobian", reg_strength=0.1, reg_target="softmax"),
    dict(regularizer="jacobian_proj", reg_strength=0.1, reg_projections=3),
    dict(regularizer="bias_jacobian", reg_strength=100.0, reg_target="softmax"),
    dict(regularizer="input_noise", noise_std=0.1),
    dict(regularizer="jacobian_matching", reg_strength=0.1, noise_std=0.1, optimizer="lbfgs"),
    dict(regularizer="jacobian", reg_strength=0.1, optimizer="lbfgs"),
])
def test_good_settings_make_their_penalty(changes):
    cfg = TrialConfig(**changes)
    penalty = make_penalty(cfg)
    assert isinstance(penalty, penalty_class(cfg.regularizer)) and isinstance(penalty, Regularizer)
    assert penalty.strength == cfg.reg_strength and penalty.target == cfg.reg_target


def test_no_regularizer_no_penalty():
    assert make_penalty(TrialConfig()) is None
    assert set(TABLE) == {"jacobian", "jacobian_proj", "bias_jacobian", "input_noise", "jacobian_matching"}


@pytest.mark.parametrize("name", sorted(TABLE))
def test_every_entry_of_the_table_builds_its_penalty_from_the_settings_it_takes(name):
    """Each setting the table says the regularizer takes is accepted (and needed, for strength and noise);
    each one it does not take is refused: the table, config validation and the classes agree."""
    spec = TABLE[name]
    settings = {"regularizer": name}
    if spec.strength:
        settings["reg_strength"] = 0.1
    if spec.noise:
        settings["noise_std"] = 0.1
    penalty = make_penalty(TrialConfig(**settings))
    assert isinstance(penalty, Regularizer) and type(penalty) is spec.load()
    for field, value, takes in (("reg_target", "softmax", spec.target), ("reg_projections", 2, spec.projections)):
        if takes:
            TrialConfig(**settings, **{field: value})
        else:
            with pytest.raises(ConfigError, match="applies only to"):
                TrialConfig(**settings, **{field: value})
    if spec.stochastic:
        with pytest.raises(ConfigError, match="L-BFGS"):
            TrialConfig(**settings, optimizer="lbfgs")
    else:
        TrialConfig(**settings, optimizer="lbfgs")

