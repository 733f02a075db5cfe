"""A trained net kept as a fourth record: `models/<trial_id>.safetensors`, and the net loaded back from it.

The file is safetensors (a JSON header, then raw little-endian tensors: nothing is unpickled, and any
safetensors reader in any language opens it). Its tensors are the MLP's state dict ("layers.0.weight",
"layers.0.bias", ...; float32, on the CPU); its header metadata make it self-describing:

    format        "sensitivity-study/mlp/1"
    trial_id      the trial it belongs to
    config        the trial's canonical TrialConfig, as JSON (the net's architecture and init seed)
    n_features    input size;  n_classes: output size
    init_sha256   tensors_sha256 of the net at initialization

The initial weights are not stored: they are a function of the config (study.models.build_model draws
them from the init seed), so `load_model(..., initial=True)` regenerates them and checks the hash the
trial recorded (`model.init_sha256`), which fails loudly if the initialization code ever changes.
A quick-preset net (784 inputs, width 128-512, depth 2-4) is 0.4-3.7 MB; see README.md for a sweep.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Mapping

import torch

from study.config import ConfigError, TrialConfig
from study.models import MLP, build_model
from study.records import model_path, resolve

FORMAT = "sensitivity-study/mlp/1"
HEADER_LIMIT = 100 * 2 ** 20  # a safetensors header longer than this is not one of ours


class WeightsError(ConfigError):
    """A weights file that is missing, truncated or not a kept net of this trial; the message names the file."""


def cpu_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The model's state dict as contiguous CPU tensors (copies: the model may go on training)."""
    return {name: value.detach().to("cpu", copy=True).contiguous() for name, value in model.state_dict().items()}


def tensors_sha256(tensors: Mapping[str, torch.Tensor]) -> str:
    """sha256 over (name, dtype, shape, raw bytes) of every tensor, in name order: equal iff the weights are."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        value = tensors[name].detach().to("cpu").contiguous()
        digest.update(f"{name}|{value.dtype}|{tuple(value.shape)}|".encode())
        digest.update(value.view(torch.uint8).numpy().tobytes() if value.numel() else b"")
    return digest.hexdigest()


def model_sha256(model: torch.nn.Module) -> str:
    """tensors_sha256 of a model's state dict (the trial row's model.init_sha256 at initialization)."""
    return tensors_sha256(model.state_dict())


def encode(model: MLP, cfg: TrialConfig, n_features: int, n_classes: int, init_sha256: str) -> bytes:
    """The weights file's bytes (safetensors) for `model`, the trained net of trial `cfg`."""
    from safetensors.torch import save

    metadata = {"format": FORMAT, "trial_id": cfg.trial_id, "config": json.dumps(cfg.canonical(), sort_keys=True),
                "n_features": str(n_features), "n_classes": str(n_classes), "init_sha256": init_sha256}
    return save(cpu_state(model), metadata=metadata)


def _header(blob: bytes, path: str) -> dict[str, Any]:
    """The safetensors JSON header of `blob` (8-byte little-endian length, then JSON), checked for our format."""
    if len(blob) < 8:
        raise WeightsError(f"weights file {path} is truncated ({len(blob)} bytes)")
    size = int.from_bytes(blob[:8], "little")
    if size > HEADER_LIMIT or 8 + size > len(blob):
        raise WeightsError(f"weights file {path} is truncated or not safetensors (header of {size} bytes, "
                           f"file of {len(blob)})")
    try:
        header = json.loads(blob[8:8 + size])
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise WeightsError(f"weights file {path} is not safetensors (its header is not JSON)") from None
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise WeightsError(f"weights file {path} is not a kept net of sensitivity-study (format "
                           f"{(meta or {}).get('format')!r}, expected {FORMAT!r})")
    return meta


def read_weights(location: str, trial_id: str) -> tuple[dict[str, str], dict[str, torch.Tensor], str]:
    """(header metadata, CPU tensors, path) of the kept net of `trial_id` under `location`; WeightsError if
    the file is missing, truncated, foreign, or another trial's."""
    fs, root = resolve(location)
    path = model_path(root, trial_id)
    try:
        with fs.open_input_stream(path) as handle:  # one whole read: one GET on object stores
            blob = handle.read()
    except FileNotFoundError:
        raise WeightsError(f"no kept weights for trial {trial_id}: {path} does not exist (the trial ran with "
                           "--no-keep-models, failed before training, or ran before weights were kept)") from None
    except OSError as exc:
        raise WeightsError(f"weights file {path} cannot be read: {exc}") from None
    meta = _header(blob, path)
    if meta.get("trial_id") != trial_id:
        raise WeightsError(f"weights file {path} holds trial {meta.get('trial_id')!r}, not {trial_id!r}")
    from safetensors.torch import load

    try:
        tensors = load(blob)
    except Exception as exc:  # safetensors' own error type: a file that lies about its tensors
        raise WeightsError(f"weights file {path} is damaged: {exc}") from None
    return meta, tensors, path


def _trial_id(trial: str | Mapping[str, Any]) -> str:
    if isinstance(trial, str):
        return trial
    try:
        return str(trial["trial_id"])
    except (KeyError, TypeError, IndexError):
        raise TypeError("load_model takes a trial id or a trials row (a mapping with 'trial_id')") from None


def load_model(location: str, trial: str | Mapping[str, Any], initial: bool = False,
               device: str | torch.device | None = None) -> MLP:
    """The trained net of a trial (a trial id or its trials row) kept under `location` (a directory or an
    s3:// URI), in eval mode, on `device` (default: the CPU). initial=True: the same net at initialization,
    regenerated from the config the file records and checked against its init_sha256."""
    return load_kept(location, _trial_id(trial), initial, device)[0]


def load_kept(location: str, trial_id: str, initial: bool = False,
              device: str | torch.device | None = None) -> tuple[MLP, TrialConfig]:
    """load_model's net and the TrialConfig its file records."""
    meta, tensors, path = read_weights(location, trial_id)
    try:
        cfg = TrialConfig.from_dict(json.loads(meta["config"]))
        n_features, n_classes = int(meta["n_features"]), int(meta["n_classes"])
    except (KeyError, ValueError, TypeError) as exc:
        raise WeightsError(f"weights file {path} has an unreadable config in its header ({exc})") from None
    model = build_model(cfg, n_features, n_classes, "cpu")
    if initial:
        found = model_sha256(model)
        if found != meta.get("init_sha256"):
            raise WeightsError(f"the initial net of trial {trial_id} regenerated from its config has sha256 {found}, "
                               f"not the {meta.get('init_sha256')} its trial recorded: the initialization changed")
    else:
        try:
            model.load_state_dict(tensors, strict=True)
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[0]
            raise WeightsError(f"weights file {path} does not fit the net its config describes: {first}") from None
    model.eval()
    return (model.to(device) if device is not None else model), cfg
