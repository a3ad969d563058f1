"""Last checks shared by every reader before a `Study` leaves `kdmed.io`."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from kdmed.errors import StudyReadError
from kdmed.io.orientation import axis_codes, to_canonical, voxel_sizes
from kdmed.io.study import Study, StudyMetadata


def check_finite(name: str, array: np.ndarray) -> None:
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        n_nan = int(np.isnan(array).sum())
        n_inf = int(np.isinf(array).sum())
        raise StudyReadError(
            f"{name}: the image holds {n_nan} NaN and {n_inf} infinite voxel(s); kdmed needs finite "
            "intensities. Replace them (e.g. with 0) in the source data and export again"
        )


def volume_study(name: str, array: np.ndarray, affine: np.ndarray, metadata: StudyMetadata) -> Study:
    """A 3D array `(X, Y, Z)` with its voxel->RAS affine, reoriented to closest canonical RAS."""
    if array.ndim != 3:
        raise StudyReadError(f"{name}: expected a 3D volume, got shape {array.shape}")
    array = np.asarray(array, dtype=np.float32)
    check_finite(name, array)
    array, affine = to_canonical(array, np.asarray(affine, dtype=np.float64))
    metadata = replace(metadata, orientation=axis_codes(affine))
    return Study(np.ascontiguousarray(array), affine, voxel_sizes(affine), metadata)


def image_study(name: str, array: np.ndarray, spacing: tuple[float, float], metadata: StudyMetadata) -> Study:
    """A 2D image `(H, W)` or `(H, W, 3)` in stored row/column order; affine maps (row, col, 0) to mm."""
    array = np.ascontiguousarray(array, dtype=np.float32)
    check_finite(name, array)
    affine = np.diag([float(spacing[0]), float(spacing[1]), 1.0, 1.0])
    return Study(array, affine, (float(spacing[0]), float(spacing[1])), replace(metadata, orientation=None))
