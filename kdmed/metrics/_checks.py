"""Boundary checks shared by the metric functions.

Every public metric validates its arguments here, once, and raises :class:`MetricInputError` (a
``ValueError`` and a :class:`kdmed.errors.KdmedError`) naming the argument, the bad value or shape and what
is allowed. Data that are well formed but on which a metric is undefined (one class only, no anomalous
region, no negative pixel) raise the subclass :class:`DegenerateSampleError`, which the bootstrap skips.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from kdmed.errors import KdmedError


class MetricInputError(KdmedError, ValueError):
    """A metric got an argument of the wrong shape, type or value."""


class DegenerateSampleError(MetricInputError):
    """Well-formed data on which the metric is undefined (e.g. a single class); bootstrap skips these."""


def _real_array(value: Any, name: str) -> np.ndarray:
    a = np.asarray(value)
    if a.dtype == object or not (
        np.issubdtype(a.dtype, np.bool_)
        or np.issubdtype(a.dtype, np.integer)
        or np.issubdtype(a.dtype, np.floating)
    ):
        raise MetricInputError(f"{name} must be a real numeric array; got dtype {a.dtype}.")
    return a


def as_labels(labels: Any, name: str = "labels") -> np.ndarray:
    """1-D image labels (0 normal, 1 anomalous) as a boolean array."""
    a = _real_array(labels, name)
    if a.ndim != 1 or a.size == 0:
        raise MetricInputError(
            f"{name} must be a non-empty 1-D array (one label per image); got shape {a.shape}."
        )
    if a.dtype == np.bool_:
        return a
    bad = (a != 0) & (a != 1)
    if bad.any():
        raise MetricInputError(
            f"{name} must hold only 0 (normal) and 1 (anomalous); got {np.unique(a[bad])[:5].tolist()}."
        )
    return a == 1


def as_scores(scores: Any, n: int, name: str = "scores") -> np.ndarray:
    """1-D finite scores of length ``n`` as float64 (exact for float32 inputs)."""
    a = _real_array(scores, name)
    if a.shape != (n,):
        raise MetricInputError(f"{name} must have shape ({n},) like labels; got shape {a.shape}.")
    a = a.astype(np.float64, copy=False)
    if not np.isfinite(a).all():
        raise MetricInputError(f"{name} must be finite; got {int((~np.isfinite(a)).sum())} NaN/inf value(s).")
    return a


def require_both_classes(y: np.ndarray, name: str = "labels") -> None:
    n_pos = int(y.sum())
    if n_pos == 0 or n_pos == y.size:
        only = "anomalous (1)" if n_pos else "normal (0)"
        raise DegenerateSampleError(
            f"{name} contains only {only} samples ({y.size} of them); the metric needs both classes."
        )


def as_maps_and_masks(maps: Any, masks: Any) -> tuple[np.ndarray, np.ndarray]:
    """(N, H, W) finite maps (float32/float64 kept as is) and (N, H, W) masks as booleans (> 0 = anomalous).

    Masks may be boolean or hold non-negative integer values (label maps such as BraTS {0, 1, 2, 4}); a
    non-integral value means the mask was resized with interpolation, which blurs region borders.
    """
    m = _real_array(maps, "maps")
    if m.ndim != 3 or m.size == 0:
        raise MetricInputError(
            f"maps must be a non-empty (N, H, W) stack of anomaly maps; got shape {m.shape} (for one image "
            "pass map[None])."
        )
    if not np.issubdtype(m.dtype, np.floating):
        m = m.astype(np.float64)
    if not np.isfinite(m).all():
        raise MetricInputError(f"maps must be finite; got {int((~np.isfinite(m)).sum())} NaN/inf value(s).")
    g = _real_array(masks, "masks")
    if g.shape != m.shape:
        raise MetricInputError(
            f"masks must have the shape of maps {m.shape}; got {g.shape}. Resize masks with "
            "kdmed.metrics.resize_mask_nearest (never bilinear)."
        )
    if g.dtype == np.bool_:
        return m, g
    if (g < 0).any():
        raise MetricInputError("masks must be >= 0 (0 = normal, > 0 = anomalous); got negative values.")
    if np.issubdtype(g.dtype, np.floating) and (not np.isfinite(g).all() or (g != np.floor(g)).any()):
        raise MetricInputError(
            "masks hold non-integral values (e.g. 0.5): they were resized with interpolation; resize them "
            "with kdmed.metrics.resize_mask_nearest instead."
        )
    return m, g > 0


def as_groups(groups: Any, n: int, name: str = "groups") -> tuple[np.ndarray, int]:
    """Group ids (e.g. patient ids, any sortable values) -> (codes 0..G-1 in sorted-id order, G)."""
    a = np.asarray(groups)
    if a.shape != (n,):
        raise MetricInputError(f"{name} must have shape ({n},) (one id per image); got shape {a.shape}.")
    try:
        uniq, codes = np.unique(a, return_inverse=True)
    except TypeError as exc:
        raise MetricInputError(f"{name} must hold ids of one sortable type (str or int): {exc}") from exc
    if uniq.size < 2:
        raise MetricInputError(f"{name} must contain at least 2 distinct groups to resample; got {uniq.size}")
    return codes.astype(np.int64).ravel(), int(uniq.size)


def as_fraction(value: Any, name: str, *, allow_one: bool = True) -> float:
    """A float in (0, 1] (or (0, 1) with ``allow_one=False``)."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise MetricInputError(f"{name} must be a number; got {value!r}.")
    v = float(value)
    upper_ok = v <= 1 if allow_one else v < 1
    if not (math.isfinite(v) and v > 0 and upper_ok):
        allowed = "0 < x <= 1" if allow_one else "0 < x < 1"
        raise MetricInputError(f"{name} must satisfy {allowed}; got {value!r}.")
    return v


def as_positive_int(value: Any, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise MetricInputError(f"{name} must be an integer >= {minimum}; got {value!r}.")
    return int(value)
