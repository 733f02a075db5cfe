import math

import pytest
import torch

from study.config import TrialConfig
from study.data import load_dataset
from study.models import build_model
from study.train import accuracy, train

SMALL = dict(dataset="synthetic", n_train=200, n_test=100, width=32, depth=3, eval_every=20, max_steps=600)


@pytest.mark.parametrize("optimizer, lr", [("sgd", 0.1), ("momentum", 0.05), ("adam", 0.01), ("rmsprop", 0.003),
                                           ("lbfgs", 1.0)])
def test_each_optimizer_fits_a_small_problem(optimizer, lr):
    cfg = TrialConfig(optimizer=optimizer, lr=lr, **SMALL)
    data = load_dataset(cfg)
    model = build_model(cfg, data.n_features, data.n_classes)
    outcome = train(model, data, cfg)
    assert outcome.status == "ok", outcome.message
    assert outcome.train_accuracy == 1.0 == accuracy(model, data.x_train, data.y_train)
    assert 0 < outcome.steps <= cfg.max_steps and not model.training


def test_step_budget_gives_not_fit_and_cadence_is_respected():
    cfg = TrialConfig(dataset="synthetic", n_train=300, random_labels=1.0, width=8, depth=2, max_steps=50, eval_every=25)
    data = load_dataset(cfg)
    model = build_model(cfg, data.n_features, data.n_classes)
    seen = []
    outcome = train(model, data, cfg, progress=lambda s, loss, acc: seen.append(s))
    assert outcome.status == "not_fit" and outcome.steps == 50 and seen == [25, 50]
    assert "train accuracy" in outcome.message


def test_divergence_is_a_status_not_a_crash():
    cfg = TrialConfig(dataset="synthetic", n_train=100, optimizer="sgd", lr=1e6, init_scale=8.0, max_steps=200,
                      eval_every=10, depth=4)
    data = load_dataset(cfg)
    model = build_model(cfg, data.n_features, data.n_classes)
    outcome = train(model, data, cfg)
    assert outcome.status == "diverged" and outcome.steps <= 200


def test_same_config_same_weights_and_full_batch_switch():
    cfg = TrialConfig(max_steps=40, eval_every=20, **{k: v for k, v in SMALL.items() if k not in ("max_steps", "eval_every")})
    weights = []
    for _ in range(2):
        data = load_dataset(cfg)
        model = build_model(cfg, data.n_features, data.n_classes)
        train(model, data, cfg)
        weights.append(model.layers[0].weight.detach().clone())
    assert torch.equal(weights[0], weights[1])
    full = cfg.replace(full_batch=True)
    model = build_model(full, data.n_features, data.n_classes)
    train(model, data, full)
    assert not torch.equal(model.layers[0].weight, weights[0])


def test_augmentation_trains_on_images():
    cfg = TrialConfig(dataset="digits", n_train=100, n_test=50, augment=True, augment_shift=1, max_steps=100,
                      eval_every=50, width=32)
    data = load_dataset(cfg)
    model = build_model(cfg, data.n_features, data.n_classes)
    outcome = train(model, data, cfg)
    assert outcome.steps > 0 and math.isfinite(outcome.train_accuracy)
