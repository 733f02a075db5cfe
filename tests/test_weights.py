"""Kept nets (study.weights): a trial writes its trained weights as safetensors before its trials row, and
load_model gives back the very net, or its initialization regenerated from the config."""

import hashlib
import json

import pytest
import safetensors
import torch

from analysis import load_trials
from study import TrialConfig, load_dataset, load_model, run_trial
from study.models import build_model
from study.packed import run_packed
from study.weights import WeightsError, model_sha256, tensors_sha256

FAST = dict(dataset="digits", n_train=120, n_test=60, width=24, depth=3, max_steps=300, eval_every=50, lr=0.01,
            n_trajectories=0)


@pytest.fixture(scope="module")
def kept(tmp_path_factory):
    out = tmp_path_factory.mktemp("kept")
    result = run_trial(TrialConfig(**FAST))
    result.write(str(out))
    return out, result


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for name in sa:
        torch.testing.assert_close(sa[name], sb[name], rtol=0, atol=0)


def test_a_trial_keeps_its_trained_net_and_load_model_gives_it_back(kept):
    out, result = kept
    path = out / "models" / f"{result.trial_id}.safetensors"
    assert path.exists() and not list(out.rglob(".tmp-*"))
    loaded = load_model(str(out), result.trial_id)
    _same_weights(loaded, result.model)
    assert not loaded.training and next(loaded.parameters()).device.type == "cpu"
    data = load_dataset(result.config)
    with torch.no_grad():
        torch.testing.assert_close(loaded(data.x_test), result.model(data.x_test), rtol=0, atol=0)


def test_load_model_takes_a_trials_row_too(kept):
    out, result = kept
    row = load_trials(str(out)).iloc[0]
    _same_weights(load_model(str(out), row), result.model)
    _same_weights(load_model(str(out), row.to_dict()), result.model)


def test_the_file_is_plain_safetensors_that_says_what_it_holds(kept):
    out, result = kept
    with safetensors.safe_open(str(out / "models" / f"{result.trial_id}.safetensors"), framework="pt") as handle:
        meta = handle.metadata()
        names = sorted(handle.keys())
    assert names == sorted(result.model.state_dict())
    assert meta["trial_id"] == result.trial_id
    assert json.loads(meta["config"]) == result.config.canonical()
    assert (int(meta["n_features"]), int(meta["n_classes"])) == (64, 10)
    assert meta["init_sha256"] == result.record["model.init_sha256"]


def test_the_initial_net_is_regenerated_from_the_config_and_matches_the_recorded_hash(kept):
    out, result = kept
    initial = load_model(str(out), result.trial_id, initial=True)
    assert model_sha256(initial) == result.record["model.init_sha256"]
    fresh = build_model(result.config, 64, 10)  # what the trial started from
    _same_weights(initial, fresh)
    assert model_sha256(initial) != model_sha256(result.model)  # training moved the weights
    # the recorded hash is of the untrained net: the same init seed on the CPU, drawn independently here
    gen = torch.Generator().manual_seed(result.config.seed_for("init"))
    first = torch.randn((24, 64), generator=gen) * (result.config.init_scale / 64 ** 0.5)
    torch.testing.assert_close(initial.layers[0].weight, first, rtol=0, atol=0)


def test_tensors_sha256_is_a_hash_of_names_shapes_and_bytes():
    a = {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3), "b": torch.zeros(2)}
    digest = hashlib.sha256()
    for name in ("b", "w"):
        value = a[name]
        digest.update(f"{name}|{value.dtype}|{tuple(value.shape)}|".encode())
        digest.update(value.numpy().tobytes())
    assert tensors_sha256(a) == digest.hexdigest()
    assert tensors_sha256({**a, "w": a["w"].reshape(3, 2)}) != tensors_sha256(a)
    bumped = a["w"].clone()
    bumped[1, 2] = torch.nextafter(bumped[1, 2], torch.tensor(100.0))
    assert tensors_sha256({**a, "w": bumped}) != tensors_sha256(a)


def test_no_keep_model_writes_no_weights(tmp_path):
    result = run_trial(TrialConfig(**FAST, seed=3))
    result.write(str(tmp_path), keep_model=False)
    assert (tmp_path / "trials" / f"{result.trial_id}.parquet").exists() and not (tmp_path / "models").exists()
    with pytest.raises(WeightsError, match="no kept weights .* --no-keep-models"):
        load_model(str(tmp_path), result.trial_id)


def test_packed_nets_are_kept_each_under_its_own_id(tmp_path):
    cfgs = [TrialConfig(**{**FAST, "optimizer": "sgd", "lr": 0.1, "seed": s}) for s in (0, 1)]
    results = run_packed(cfgs)
    for result in results:
        assert result.record["env.pack_size"] == 2
        result.write(str(tmp_path))
        _same_weights(load_model(str(tmp_path), result.trial_id), result.model)
        assert model_sha256(load_model(str(tmp_path), result.trial_id, initial=True)) == \
            result.record["model.init_sha256"] == model_sha256(build_model(result.config, 64, 10))


def _copy(kept, tmp_path):
    out, result = kept
    (tmp_path / "models").mkdir()
    path = tmp_path / "models" / f"{result.trial_id}.safetensors"
    path.write_bytes((out / "models" / f"{result.trial_id}.safetensors").read_bytes())
    return path, result


@pytest.mark.parametrize("damage, words", [
    (lambda blob: blob[: len(blob) // 2], "damaged|truncated"),
    (lambda blob: blob[:5], "truncated"),
    (lambda blob: b"PAR1" + bytes(100), "truncated or not safetensors"),
    (lambda blob: (20).to_bytes(8, "little") + b"{not json at all!!!}", "not JSON"),
])
def test_a_damaged_file_is_one_clear_error_naming_it(kept, tmp_path, damage, words):
    path, result = _copy(kept, tmp_path)
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(WeightsError, match=words) as info:
        load_model(str(tmp_path), result.trial_id)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_a_foreign_or_another_trial_s_file_is_refused(kept, tmp_path):
    from safetensors.torch import save

    path, result = _copy(kept, tmp_path)
    other = tmp_path / "models" / "0123456789abcdef.safetensors"
    other.write_bytes(path.read_bytes())
    with pytest.raises(WeightsError, match="holds trial .*, not '0123456789abcdef'"):
        load_model(str(tmp_path), "0123456789abcdef")
    path.write_bytes(save({"x": torch.zeros(3)}, metadata={"format": "something else"}))
    with pytest.raises(WeightsError, match="not a kept net of sensitivity-study"):
        load_model(str(tmp_path), result.trial_id)


def test_a_changed_initialization_is_caught(kept, tmp_path, monkeypatch):
    path, result = _copy(kept, tmp_path)
    import study.weights as weights

    monkeypatch.setattr(weights, "model_sha256", lambda model: "0" * 64)  # as if init drew other numbers
    with pytest.raises(WeightsError, match="the initialization changed"):
        load_model(str(tmp_path), result.trial_id, initial=True)
