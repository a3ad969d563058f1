"""Patient-level bootstrap confidence intervals: GROUPS (patients) are resampled with replacement, never
single images, since slices of one patient are not independent.

:func:`bootstrap` and :func:`pixel_bootstrap` draw the same resamples for the same seed and group ids
(one row of ``rng.integers(0, G, G)`` per replicate, groups coded in sorted-id order), so image and pixel
intervals are paired. Resamples on which a metric is undefined (DegenerateSampleError: one class only, no
anomalous region) are skipped and counted; more than ``max_skipped`` (a fraction of n_boot) is an error.
Intervals are percentile intervals (Efron and Tibshirani 1993, ch. 13).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from kdmed.metrics._checks import (
    DegenerateSampleError,
    MetricInputError,
    as_fraction,
    as_groups,
    as_maps_and_masks,
    as_positive_int,
)
from kdmed.metrics.pixel import area_to_limit, aupro, label_regions, pixel_auroc


@dataclass(frozen=True, eq=False)
class BootstrapResult:
    estimate: float  # the metric on the full data (exact)
    low: float
    high: float
    alpha: float
    n_boot: int  # replicates drawn
    n_skipped: int  # degenerate replicates skipped
    replicates: np.ndarray  # the n_boot - n_skipped values, in draw order

    @property
    def interval(self) -> tuple[float, float]:
        return self.low, self.high


def _check_common(n_boot: Any, alpha: Any, max_skipped: Any) -> tuple[int, float, float]:
    return (
        as_positive_int(n_boot, "n_boot", minimum=2),
        as_fraction(alpha, "alpha", allow_one=False),
        as_fraction(max_skipped, "max_skipped", allow_one=False),
    )


def _draws(seed: int, n_boot: int, n_groups: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n_groups, size=(n_boot, n_groups))


def _result(
    estimate: float, values: list[float], n_boot: int, alpha: float, max_skipped: float
) -> BootstrapResult:
    skipped = n_boot - len(values)
    if skipped > max_skipped * n_boot or len(values) < 2:
        raise MetricInputError(
            f"{skipped} of {n_boot} bootstrap resamples were degenerate (e.g. one class only), more than "
            f"max_skipped={max_skipped}: too few groups contain both classes for a group-level interval."
        )
    reps = np.asarray(values, dtype=np.float64)
    low, high = np.quantile(reps, [alpha / 2, 1 - alpha / 2])
    return BootstrapResult(estimate, float(low), float(high), alpha, n_boot, skipped, reps)


def _as_number(value: Any) -> float:
    if isinstance(value, tuple) or not np.isscalar(value):
        raise MetricInputError(
            f"metric_fn must return one number; got {type(value).__name__}. Wrap tuple-valued metrics, e.g. "
            "lambda y, s: f1_max(y, s).f1."
        )
    return float(value)


def bootstrap(
    metric_fn: Callable[..., float],
    *arrays: Any,
    groups: Any,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    max_skipped: float = 0.1,
) -> BootstrapResult:
    """Generic group bootstrap of ``metric_fn(*arrays)``; every array is indexed along its first axis.

    Works for image metrics (``bootstrap(image_auroc, labels, scores, groups=patients)``) and, exactly but
    at full cost per replicate, for pixel metrics (``bootstrap(aupro, maps, masks, groups=patients,
    n_boot=200)``); prefer :func:`pixel_bootstrap` for those. Only DegenerateSampleError is skipped: any
    other error of metric_fn propagates.
    """
    if not callable(metric_fn):
        raise MetricInputError(f"metric_fn must be callable; got {metric_fn!r}.")
    n_boot, alpha, max_skipped = _check_common(n_boot, alpha, max_skipped)
    if not arrays:
        raise MetricInputError("bootstrap needs at least one data array after metric_fn.")
    data = [np.asarray(a) for a in arrays]
    n = len(data[0]) if data[0].ndim else 0
    for i, a in enumerate(data):
        if a.ndim == 0 or len(a) != n:
            raise MetricInputError(f"array {i} must have {n} rows like array 0; got shape {a.shape}.")
    codes, n_groups = as_groups(groups, n)
    estimate = _as_number(metric_fn(*data))  # errors on the full data propagate
    order = np.argsort(codes, kind="stable")
    sizes = np.bincount(codes, minlength=n_groups)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    values: list[float] = []
    for draw in _draws(seed, n_boot, n_groups):
        lengths = sizes[draw]
        # Concatenated ranges [starts[g], starts[g] + sizes[g]) for each drawn group, duplicates kept.
        offsets = np.repeat(starts[draw] - np.cumsum(lengths) + lengths, lengths) + np.arange(lengths.sum())
        rows = order[offsets]
        try:
            values.append(_as_number(metric_fn(*(a[rows] for a in data))))
        except DegenerateSampleError:
            continue
    return _result(estimate, values, n_boot, alpha, max_skipped)


def bootstrap_ci(
    metric_fn: Callable[[Any, Any], float],
    labels: Any,
    scores: Any,
    groups: Any,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> tuple[float, float]:
    """(low, high) percentile interval of an image metric, resampling groups; see :func:`bootstrap`."""
    return bootstrap(metric_fn, labels, scores, groups=groups, n_boot=n_boot, alpha=alpha, seed=seed).interval


def _edges(neg: np.ndarray, fpr_limit: float, n_bins: int) -> np.ndarray:
    """Thresholds at n_bins FPR levels in (0, fpr_limit] and n_bins in (fpr_limit, 1] of the negatives.

    Each level's value v is followed by nextafter(v), so a tie mass at v sits alone in the bin [v, v+).
    """
    levels = np.concatenate(
        [np.linspace(0, fpr_limit, n_bins + 1)[1:], np.linspace(fpr_limit, 1, n_bins + 1)[1:]]
    )
    q = np.quantile(neg, 1 - levels, method="inverted_cdf").astype(neg.dtype)
    return np.unique(np.concatenate([q, np.nextafter(q, np.asarray(np.inf, dtype=neg.dtype))]))


def _group_histograms(
    maps: np.ndarray, positive: np.ndarray, codes: np.ndarray, n_groups: int, edges: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per group, over score bins: negative counts, anomalous counts, region-weight sums; region counts."""
    n_bins = edges.size + 1  # bin i holds edges[i-1] <= score < edges[i]
    neg_h, pos_h, pro_h = (np.zeros((n_groups, n_bins)) for _ in range(3))
    regions = np.zeros(n_groups)
    for image, is_pos, g in zip(maps, positive, codes, strict=True):
        bins = np.searchsorted(edges, image.ravel(), side="right")
        flat_pos = is_pos.ravel()
        neg_h[g] += np.bincount(bins[~flat_pos], minlength=n_bins)
        if flat_pos.any():
            labels, n_regions = label_regions(is_pos)
            region_of = labels.ravel()[flat_pos]
            pos_h[g] += np.bincount(bins[flat_pos], minlength=n_bins)
            pro_h[g] += np.bincount(
                bins[flat_pos], weights=1.0 / np.bincount(region_of)[region_of], minlength=n_bins
            )
            regions[g] += n_regions
    return neg_h, pos_h, pro_h, regions


def binned_pixel_metrics(
    neg_h: np.ndarray, pos_h: np.ndarray, pro_h: np.ndarray, regions: np.ndarray, fpr_limit: float
) -> tuple[np.ndarray, np.ndarray]:
    """Pixel AUROC and AUPRO of each row of pooled bin histograms (rows = resamples; NaN if degenerate).

    AUROC counts pairs within one bin as ties; AUPRO uses the bin edges as thresholds, a subset of the exact
    curve's vertices. Error bounds: AUROC <= max over bins of (negatives in bin / all negatives) / 2,
    AUPRO <= max FPR step below fpr_limit / fpr_limit, both about 1 / n_bins with quantile edges.
    """
    n_neg, n_pos = neg_h.sum(1), pos_h.sum(1)
    ok = (n_neg > 0) & (n_pos > 0)
    below = np.cumsum(neg_h, 1) - neg_h
    with np.errstate(invalid="ignore", divide="ignore"):
        auroc = (pos_h * (below + 0.5 * neg_h)).sum(1) / (n_pos * n_neg)
        zeros = np.zeros((neg_h.shape[0], 1))
        fpr = np.hstack([zeros, np.cumsum(neg_h[:, ::-1], 1) / n_neg[:, None]])
        pro = np.hstack([zeros, np.minimum(np.cumsum(pro_h[:, ::-1], 1) / regions[:, None], 1.0)])
    pro_area = np.array(
        [
            area_to_limit(f, p, fpr_limit) / fpr_limit if good else np.nan
            for f, p, good in zip(fpr, pro, ok, strict=True)
        ]
    )
    return np.where(ok, auroc, np.nan), pro_area


def pixel_bootstrap(
    maps: Any,
    masks: Any,
    groups: Any,
    *,
    fpr_limit: float = 0.3,
    n_bins: int = 1000,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    max_skipped: float = 0.1,
) -> dict[str, BootstrapResult]:
    """Group-bootstrap intervals of pixel AUROC and AUPRO from per-group score histograms (fast).

    One pass over the pixels builds, per group, histograms over about 4 * n_bins score bins (quantiles of
    the negative pixels, half of them inside FPR <= fpr_limit) of negatives, anomalous pixels and region
    weights (1 / region size). A replicate is then a weighted sum of group histograms (weights = how often
    each group was drawn): cost independent of image size. ``estimate`` is the exact metric; replicates
    are binned, within about 1 / n_bins of the exact values (bounds in :func:`binned_pixel_metrics`).
    ``groups`` holds one id per image.
    """
    n_boot, alpha, max_skipped = _check_common(n_boot, alpha, max_skipped)
    limit = as_fraction(fpr_limit, "fpr_limit")
    n_bins = as_positive_int(n_bins, "n_bins", minimum=10)
    m, positive = as_maps_and_masks(maps, masks)
    codes, n_groups = as_groups(groups, m.shape[0])
    estimates = {"pixel_auroc": pixel_auroc(m, positive), "aupro": aupro(m, positive, limit)}
    stats = _group_histograms(m, positive, codes, n_groups, _edges(m[~positive], limit, n_bins))
    draws = _draws(seed, n_boot, n_groups)
    counts = np.bincount((np.arange(n_boot)[:, None] * n_groups + draws).ravel(), minlength=n_boot * n_groups)
    weights = counts.reshape(n_boot, n_groups).astype(np.float64)
    auroc_reps, aupro_reps = [], []
    for start in range(0, n_boot, 128):  # bounded memory: 128 x bins x a few arrays
        w = weights[start : start + 128]
        a, p = binned_pixel_metrics(*(w @ s for s in stats[:3]), w @ stats[3], limit)
        auroc_reps.append(a)
        aupro_reps.append(p)
    out = {}
    for name, reps in (("pixel_auroc", auroc_reps), ("aupro", aupro_reps)):
        values = np.concatenate(reps)
        out[name] = _result(estimates[name], values[~np.isnan(values)].tolist(), n_boot, alpha, max_skipped)
    return out
