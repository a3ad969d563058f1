"""One training case of the GPU check: synthetic inputs, the training loop's step, timed."""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import nn

from kdmed.models.base import Detector
from kdmed.runtime import amp_dtype, autocast


def synthetic_images(count: int, size: int, seed: int) -> torch.Tensor:
    """(count, 3, size, size) grey images in [0, 1]: smooth random texture, a bright disc in odd images."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(count, 1, 8, 8, generator=generator)
    images = nn.functional.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)
    images = 0.2 + 0.5 * images.clamp(0, 1)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    for i in range(1, count, 2):
        cy, cx = torch.randint(size // 4, 3 * size // 4, (2,), generator=generator).tolist()
        radius = size / 10 * (1 + i / count)
        images[i, 0][(yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2] = 0.95
    return images.expand(-1, 3, -1, -1).contiguous()


def precision(device: torch.device, amp: bool) -> torch.dtype | None:
    """The training loop's choice on CUDA; bfloat16 on the CPU (only so the smoke test covers AMP)."""
    if not amp:
        return None
    return amp_dtype(device, True) if device.type == "cuda" else torch.bfloat16


def make_optimizer(detector: Detector, config: Any) -> torch.optim.Optimizer:
    """The method's optimiser (its type changes a step's cost a little, so use the configured one)."""
    o = config.optimizer
    parameters = list(detector.trainable_parameters())
    if o.name == "sgd":
        return torch.optim.SGD(parameters, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)
    return torch.optim.Adam(parameters, lr=o.lr, betas=o.betas, weight_decay=o.weight_decay)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ---------------------------------------------------------------- the measurements


def train_speed(
    detector: Detector,
    config: Any,
    images: torch.Tensor,
    device: torch.device,
    dtype: torch.dtype | None,
    warmup: int,
    steps: int,
    cap_s: float,
    min_timed_s: float = 0.0,
) -> dict[str, Any]:
    """Images/s over at least `steps` timed optimiser steps after `warmup`, continued until `min_timed_s`
    seconds are timed (short windows are noisy on a fast GPU); stops early when the case has run `cap_s`."""
    detector.train()
    detector.zero_grad(set_to_none=True)  # the previous case's gradients must not count in this peak
    optimizer = make_optimizer(detector, config)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)

    def step() -> None:
        with autocast(device, dtype):
            loss = detector.loss(images)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"{detector.method}: training loss became {float(loss)}")
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    started = time.perf_counter()
    for _ in range(warmup):
        step()
    synchronize(device)
    timed_start, done = time.perf_counter(), 0
    while done < steps or time.perf_counter() - timed_start < min_timed_s:
        step()
        done += 1
        if done % 5 == 0:
            synchronize(device)  # the clock must see finished steps, not queued ones
        if time.perf_counter() - started > cap_s:
            break
    synchronize(device)
    seconds = time.perf_counter() - timed_start
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return {
        "images_per_s": done * images.shape[0] / max(seconds, 1e-9),
        "timed_steps": done,
        "peak_memory_mib": peak,
    }
