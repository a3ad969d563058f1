"""fp32 versus mixed-precision agreement of anomaly maps and scores (pure functions plus one driver)."""

from __future__ import annotations

import math
from typing import Any

import torch

from kdmed.models.base import Detector
from kdmed.runtime import autocast


def average_ranks(values: torch.Tensor) -> torch.Tensor:
    """1-based ranks of a 1-D tensor, ties sharing their average rank (as scipy.stats.rankdata)."""
    order = values.argsort()
    _, inverse, counts = torch.unique_consecutive(values[order], return_inverse=True, return_counts=True)
    ends = counts.cumsum(0).double()
    average = ends - (counts.double() - 1) / 2
    ranks = torch.empty(values.numel(), dtype=torch.float64)
    ranks[order] = average[inverse]
    return ranks


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman rank correlation of two equally sized tensors (flattened); NaN when either is constant."""
    if a.numel() != b.numel():
        raise ValueError(f"spearman needs equally sized inputs; got {a.numel()} and {b.numel()} values")
    ra = average_ranks(a.detach().flatten().double().cpu())
    rb = average_ranks(b.detach().flatten().double().cpu())
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denominator = float(ra.norm() * rb.norm())
    if denominator <= 0:
        return math.nan
    return min(1.0, max(-1.0, float((ra * rb).sum()) / denominator))  # rounding can pass +-1


def map_agreement(
    maps_fp32: torch.Tensor, maps_amp: torch.Tensor, scores_fp32: torch.Tensor, scores_amp: torch.Tensor
) -> dict[str, Any]:
    """How far mixed precision moves the output: per-image map rank correlation, score changes, order."""
    per_image = [spearman(f, a) for f, a in zip(maps_fp32.float(), maps_amp.float(), strict=True)]
    s32, s16 = scores_fp32.detach().double().cpu(), scores_amp.detach().double().cpu()
    relative = (s16 - s32).abs() / s32.abs().clamp_min(1e-12)
    return {
        "spearman_mean": _finite(sum(per_image) / len(per_image)),
        "spearman_min": _finite(min(per_image)),
        "max_relative_score_difference": float(relative.max()),
        "same_score_order": bool(torch.equal(s32.argsort(stable=True), s16.argsort(stable=True))),
        "images": len(per_image),
    }


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None  # JSON has no NaN


def amp_agreement(detector: Detector, images: torch.Tensor, device: torch.device, dtype) -> dict[str, Any]:
    """Maps and scores of the same weights on the same batch in fp32 and under autocast."""
    detector.eval()
    full = detector.predict(images)
    with autocast(device, dtype):
        mixed = detector.predict(images)
    return map_agreement(full.maps, mixed.maps, full.scores, mixed.scores)
