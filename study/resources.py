"""Device selection and a memory estimate that refuses configs that would not fit, before training."""

from __future__ import annotations

import psutil
import torch

from study.config import ConfigError, TrialConfig
from study.data import IMAGE_SHAPES, N_CLASSES
from study.models import count_parameters

GIB = 1024 ** 3


class ResourceError(ConfigError):
    """A config whose estimated memory exceeds what the device has."""


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' -> the first CUDA device if there is one, else the CPU; otherwise torch.device(name)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} asked for, but torch sees no CUDA device here; use --device cpu")
    return device


def n_features(cfg: TrialConfig) -> int:
    if cfg.dataset == "synthetic":
        return cfg.synthetic_dim
    c, h, w = IMAGE_SHAPES[cfg.dataset]
    return c * h * w


def estimate_bytes(cfg: TrialConfig, chunk_size: int = 1024) -> int:
    """Peak bytes of a trial, roughly: parameters with gradients and two optimizer moments (L-BFGS: 100
    history pairs), the data on the device, training activations, and the Jacobian chunk [chunk, C, max(width, d)]."""
    d, c = n_features(cfg), N_CLASSES[cfg.dataset]
    params = count_parameters(d, cfg.width, cfg.depth, c)
    copies = 2 * 100 + 2 if cfg.optimizer == "lbfgs" else 4
    data = (cfg.n_train + cfg.n_test) * d
    batch = cfg.n_train if (cfg.full_batch or cfg.optimizer == "lbfgs") else min(cfg.batch_size, cfg.n_train)
    activations = 3 * batch * (d + cfg.width * (cfg.depth - 1) + c)
    jacobian = 3 * min(chunk_size, max(cfg.n_train, cfg.n_test)) * c * max(cfg.width, d)
    raw = 0
    if cfg.dataset == "synthetic":  # both splits generated at full size, in float64, then cast
        raw = 2 * 3 * max(cfg.n_train, cfg.n_test, 20000) * d
    return 4 * (params * copies + data + activations + jacobian + raw)


def available_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free * 0.9)
    return int(psutil.virtual_memory().available * 0.8)


def check_memory(cfg: TrialConfig, device: torch.device, available: int | None = None) -> None:
    """Raise ResourceError, with the estimate, when the trial would not fit the device's memory."""
    need = estimate_bytes(cfg)
    have = available_bytes(device) if available is None else available
    if need > have:
        raise ResourceError(f"config needs about {need / GIB:.1f} GiB (width={cfg.width}, depth={cfg.depth}, "
                            f"n_train={cfg.n_train}, optimizer={cfg.optimizer}) but {device} has "
                            f"{have / GIB:.1f} GiB free; use a smaller width, depth, n_train or batch")
