"""Last checks shared by every reader before a `Study` leaves `kdmed.io`."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from kdmed.errors import StudyReadError
from kdmed.io.grid import InputGrid
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


def volume_study(
    name: str,
    array: np.ndarray,
    affine: np.ndarray,
    metadata: StudyMetadata,
    *,
    input_shape: tuple[int, ...] | None = None,
    instance_numbers: tuple[int, ...] | None = None,
) -> Study:
    """A 3D array `(X, Y, Z)` with its voxel->RAS affine, reoriented to closest canonical RAS.

    The input grid (`input_shape`, default `array.shape`, and `affine` as given) is kept as `Study.grid`;
    `instance_numbers` are the DICOM InstanceNumbers of the input slices along axis 2.
    """
    if array.ndim != 3:
        raise StudyReadError(f"{name}: expected a 3D volume, got shape {array.shape}")
    array = np.asarray(array, dtype=np.float32)
    check_finite(name, array)
    affine = np.asarray(affine, dtype=np.float64)
    grid = InputGrid.from_affine(
        array.shape if input_shape is None else input_shape, affine, instance_numbers
    )
    if grid.instance_numbers is not None and len(grid.instance_numbers) != array.shape[2]:
        raise StudyReadError(
            f"{name}: {len(grid.instance_numbers)} InstanceNumbers for {array.shape[2]} slices; the series "
            "changed while it was read, load it again"
        )
    array, affine = to_canonical(array, affine)
    if grid.canonical_shape != array.shape:
        raise StudyReadError(
            f"{name}: the input grid {grid.shape} reoriented gives {grid.canonical_shape} but the volume read "
            f"is {array.shape}; the source changed while it was read, load it again"
        )
    metadata = replace(metadata, orientation=axis_codes(affine))
    return Study(np.ascontiguousarray(array), affine, voxel_sizes(affine), metadata, grid=grid)


def image_study(name: str, array: np.ndarray, spacing: tuple[float, float], metadata: StudyMetadata) -> Study:
    """A 2D image `(H, W)` or `(H, W, 3)` in stored row/column order; affine maps (row, col, 0) to mm."""
    array = np.ascontiguousarray(array, dtype=np.float32)
    check_finite(name, array)
    affine = np.diag([float(spacing[0]), float(spacing[1]), 1.0, 1.0])
    return Study(array, affine, (float(spacing[0]), float(spacing[1])), replace(metadata, orientation=None))
