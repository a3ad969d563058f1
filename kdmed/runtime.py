"""Device, precision and seeding: CUDA with mixed precision when available, the CPU otherwise."""

from __future__ import annotations

import contextlib
import random

import numpy as np
import torch

from kdmed.errors import ConfigError


def resolve_device(requested: str) -> torch.device:
    """'auto' picks CUDA when present; asking for 'cuda' on a machine without it is an error."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "params: 'common.device' = 'cuda' but no CUDA device is visible; use 'auto' or 'cpu'."
        )
    return torch.device(requested)


def amp_dtype(device: torch.device, enabled: bool) -> torch.dtype | None:
    """bfloat16 where the GPU supports it (no loss scaling needed), float16 otherwise; None on the CPU."""
    if not enabled or device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; returns a CPU generator for data order."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def configure_threads(num_threads: int) -> None:
    if num_threads > 0:
        torch.set_num_threads(num_threads)
