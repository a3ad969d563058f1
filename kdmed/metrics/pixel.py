"""Pixel-level metrics over a test set of anomaly maps and ground-truth masks, both (N, H, W).

All pixels of all test images count; normal images contribute all-negative masks. Masks must already have
the maps' size: resize them with :func:`resize_mask_nearest`, never with bilinear interpolation (it blurs
region borders and creates pixels that are neither normal nor anomalous).

AUPRO follows the MVTec AD definition (Bergmann et al., IJCV 2021, and the MVTec AD evaluation code):
regions are the 8-connected components of each image's mask, PRO(t) is the mean over ALL regions of the
test set of the fraction of the region's pixels with score >= t, FPR(t) is the false positives over ALL
negative pixels of the test set. The curve is exact: one vertex per distinct map value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from kdmed.metrics._checks import (
    DegenerateSampleError,
    MetricInputError,
    as_fraction,
    as_maps_and_masks,
    as_positive_int,
)
from kdmed.metrics.image import auc_from_sorted_negatives

# 8-connectivity inside each image and none across the image axis: one label call for the whole stack.
_EIGHT_IN_PLANE = np.zeros((3, 3, 3), dtype=bool)
_EIGHT_IN_PLANE[1] = True


def resize_mask_nearest(mask: Any, size: int | tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a (H, W) or (N, H, W) mask to ``size`` = (height, width) or an int.

    Pixel-centre convention: output pixel i samples input pixel floor((i + 0.5) * in / out), computed in
    integers. PIL's NEAREST and torch's ``nearest-exact`` use the same rule in floating point and can differ
    only where (i + 0.5) * in / out is a whole number (a sample exactly on a pixel border; never for odd
    input sizes); torch's legacy ``nearest`` is a different rule. Values and dtype are kept, so label maps
    stay label maps. Note the order: (height, width), not PIL's (width, height).
    """
    m = np.asarray(mask)
    if m.ndim not in (2, 3) or 0 in m.shape:
        raise MetricInputError(f"mask must be a non-empty (H, W) or (N, H, W) array; got shape {m.shape}.")
    if isinstance(size, int | np.integer) and not isinstance(size, bool):
        size = (int(size), int(size))
    if (
        not isinstance(size, tuple | list)
        or len(size) != 2
        or not all(isinstance(v, int | np.integer) and not isinstance(v, bool) and v > 0 for v in size)
    ):
        raise MetricInputError(f"size must be a positive int or (height, width) positive ints; got {size!r}.")
    (out_h, out_w), (in_h, in_w) = size, m.shape[-2:]
    # Integer arithmetic: floor((2i + 1) * in / (2 * out)) has no rounding error at any size.
    rows = ((2 * np.arange(out_h) + 1) * in_h) // (2 * out_h)
    cols = ((2 * np.arange(out_w) + 1) * in_w) // (2 * out_w)
    return m[..., rows[:, None], cols[None, :]]


def label_regions(positive: np.ndarray) -> tuple[np.ndarray, int]:
    """8-connected components of a boolean (H, W) or (N, H, W) mask, never joined across images."""
    structure = _EIGHT_IN_PLANE if positive.ndim == 3 else _EIGHT_IN_PLANE[1]
    return ndimage.label(positive, structure=structure)


@dataclass(frozen=True)
class _PixelSets:
    neg: np.ndarray  # scores of all negative pixels (a private copy: may be sorted in place)
    pos: np.ndarray  # scores of all anomalous pixels
    pos_weight: np.ndarray  # 1 / size of the pixel's region: a region's weights sum to 1
    n_regions: int


def _pixel_sets(maps: Any, masks: Any, *, regions: bool) -> _PixelSets:
    m, positive = as_maps_and_masks(maps, masks)
    n_pos = int(positive.sum())
    if n_pos == 0:
        raise DegenerateSampleError("masks contain no anomalous pixel; pixel metrics need at least one.")
    if n_pos == positive.size:
        raise DegenerateSampleError("masks contain no negative pixel; pixel metrics need normal pixels too.")
    weight, n_regions = np.empty(0), 0
    if regions:
        labels, n_regions = label_regions(positive)
        region_of = labels[positive]
        del labels
        weight = 1.0 / np.bincount(region_of)[region_of]
    return _PixelSets(m[~positive], m[positive], weight, n_regions)


def pixel_auroc(maps: Any, masks: Any) -> float:
    """AUROC over every pixel of every image (exact; equals roc_auc_score on the flattened arrays).

    Memory: one copy of the negative pixels' scores in the maps' own dtype, sorted in place.
    """
    sets = _pixel_sets(maps, masks, regions=False)
    sets.neg.sort()
    return auc_from_sorted_negatives(sets.neg, sets.pos)


def _pro_curve(sets: _PixelSets, fpr_limit: float) -> tuple[np.ndarray, np.ndarray]:
    """Exact (FPR, PRO) vertices, thresholds from +inf downwards, starting at (0, 0).

    Only the vertices up to the first one with FPR > fpr_limit are built: pixels below the score of the
    (floor(fpr_limit * n_neg) + 2)-th highest negative cannot move the curve before that point.
    """
    neg, pos, weight = sets.neg, sets.pos, sets.pos_weight
    n_neg = neg.size
    keep_top = math.floor(fpr_limit * n_neg) + 2
    if keep_top < n_neg:
        neg.partition(n_neg - keep_top)  # in place: neg is a private copy
        cut = neg[n_neg - keep_top]
        neg = neg[neg >= cut]  # whole tie at the cut value
        above = pos >= cut
        pos, weight = pos[above], weight[above]
    scores = np.concatenate([neg, pos])
    order = np.argsort(scores, kind="stable")[::-1]
    desc = scores[order]
    del scores
    ends = np.flatnonzero(np.append(desc[1:] != desc[:-1], True))
    is_neg = order < neg.size
    fp = np.cumsum(is_neg)[ends]
    pro_weight = np.zeros(order.size)
    pro_weight[~is_neg] = weight[order[~is_neg] - neg.size]
    covered = np.cumsum(pro_weight)[ends]
    fpr = np.concatenate([[0.0], fp / n_neg])
    pro = np.concatenate([[0.0], np.minimum(covered / sets.n_regions, 1.0)])
    return fpr, pro


def area_to_limit(fpr: np.ndarray, pro: np.ndarray, fpr_limit: float) -> float:
    """Trapezoid area under a curve with non-decreasing ``fpr`` from fpr[0] to ``fpr_limit``.

    The curve is cut exactly at ``fpr_limit`` by linear interpolation between its neighbouring vertices.
    """
    inside = int(np.searchsorted(fpr, fpr_limit, side="right"))
    x, y = fpr[:inside], pro[:inside]
    if inside < fpr.size and x[-1] < fpr_limit:
        x0, x1, y0, y1 = fpr[inside - 1], fpr[inside], pro[inside - 1], pro[inside]
        x = np.append(x, fpr_limit)
        y = np.append(y, y0 + (y1 - y0) * (fpr_limit - x0) / (x1 - x0))
    return float(np.trapezoid(y, x))


def aupro(maps: Any, masks: Any, fpr_limit: float = 0.3) -> float:
    """Normalised area under the PRO curve for FPR in [0, fpr_limit] (MVTec definition, exact).

    Integrates PRO over FPR with the trapezoid rule from (0, 0), interpolating the curve at fpr_limit,
    and divides by fpr_limit: a perfect map gives 1.0. Invariant to strictly increasing transforms of the
    maps. Raises DegenerateSampleError without an anomalous region or without a negative pixel.
    Memory: peak about 4x the maps' size (556 MB for 500 float32 maps of 256x256, 3.5 s on one core).
    """
    limit = as_fraction(fpr_limit, "fpr_limit")
    sets = _pixel_sets(maps, masks, regions=True)
    fpr, pro = _pro_curve(sets, limit)
    return area_to_limit(fpr, pro, limit) / limit


def _grid_pro_curve(sets: _PixelSets, num_thresholds: int) -> tuple[np.ndarray, np.ndarray]:
    """(FPR, PRO) at BMAD's grid: arange(min, max, (max - min) / num) over all map values, rule score > t."""
    lo = float(min(sets.neg.min(), sets.pos.min()))
    hi = float(max(sets.neg.max(), sets.pos.max()))
    if hi == lo:
        raise DegenerateSampleError(f"maps are constant ({lo}); a threshold grid from min to max is empty.")
    thresholds = np.arange(lo, hi, (hi - lo) / num_thresholds)
    neg = np.sort(sets.neg)
    order = np.argsort(sets.pos, kind="stable")
    pos = sets.pos[order]
    cum_weight = np.concatenate([[0.0], np.cumsum(sets.pos_weight[order])])
    fp = neg.size - np.searchsorted(neg, thresholds, side="right")
    covered = cum_weight[-1] - cum_weight[np.searchsorted(pos, thresholds, side="right")]
    return fp / neg.size, covered / sets.n_regions


def aupro_divide_by_last_fpr(
    maps: Any, masks: Any, fpr_limit: float = 0.3, num_thresholds: int | None = None
) -> float:
    """NON-STANDARD public variant of AUPRO, NOT the default: use it only to compare with published numbers.

    Reproduces the ``compute_pro`` routine of RD4AD's official code, which BMAD's PRO numbers come from:
    keep the curve points with FPR < fpr_limit, integrate PRO over FPR with the trapezoid rule without
    interpolating at fpr_limit, and divide by the LAST KEPT FPR instead of fpr_limit.

    ``num_thresholds=None`` uses the exact vertices of :func:`aupro` (origin included). On the same vertices
    the division alone can never raise the value: PRO is non-decreasing in FPR, so its mean over [0, f_last]
    is at most its mean over [0, fpr_limit]; this variant is then <= :func:`aupro`.
    ``num_thresholds=200`` reproduces that code's grid, ``numpy.arange(min, max, (max - min) / 200)`` over
    all map values with the rule score > t (no origin), up to floating rounding of the grid. That grid
    skips vertices and joins the rest with chords, which can put the value above :func:`aupro` (the
    inflation reported for BMAD) or below it.
    """
    limit = as_fraction(fpr_limit, "fpr_limit")
    sets = _pixel_sets(maps, masks, regions=True)
    if num_thresholds is None:
        fpr, pro = _pro_curve(sets, limit)
    else:
        fpr, pro = _grid_pro_curve(sets, as_positive_int(num_thresholds, "num_thresholds", minimum=2))
        fpr, pro = fpr[::-1], pro[::-1]  # thresholds ascending -> FPR descending; integrate left to right
    kept = fpr < limit
    if kept.sum() < 2 or fpr[kept].max() == 0:
        raise DegenerateSampleError(
            f"fewer than two curve points with 0 < FPR < fpr_limit={limit}; the divide-by-last-FPR variant "
            "is undefined here (use aupro)."
        )
    return float(np.trapezoid(pro[kept], fpr[kept]) / fpr[kept].max())
