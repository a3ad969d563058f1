"""Reorient a volume to the closest canonical RAS orientation, as `nibabel.as_closest_canonical` does.

Only axis permutations and flips are applied (no resampling), so voxel values are untouched and the affine
is updated to describe the same physical positions.
"""

from __future__ import annotations

import numpy as np
from nibabel import orientations


def canonical_ornt(affine: np.ndarray) -> np.ndarray:
    return orientations.io_orientation(affine)


def canonical_shape(shape: tuple[int, ...], affine: np.ndarray) -> tuple[int, ...]:
    """The shape a 3D array of `shape` takes after `to_canonical`, without touching any data."""
    ornt = canonical_ornt(affine)
    out = [0, 0, 0]
    for axis, (target, _flip) in enumerate(ornt):
        out[int(target)] = int(shape[axis])
    return tuple(out)


def canonical_affine(affine: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """The affine `to_canonical` would return for an array of `shape`, without touching any data."""
    return affine @ orientations.inv_ornt_aff(canonical_ornt(affine), shape[:3])


def to_canonical(array: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return `(array, affine)` flipped/permuted so that voxel axes run closest to +R, +A, +S."""
    ornt = canonical_ornt(affine)
    if np.array_equal(ornt, [[0, 1], [1, 1], [2, 1]]):
        return array, affine
    new = orientations.apply_orientation(array, ornt)
    new_affine = affine @ orientations.inv_ornt_aff(ornt, array.shape[:3])
    return np.ascontiguousarray(new), new_affine


def axis_codes(affine: np.ndarray) -> tuple[str, ...]:
    return tuple(str(c) for c in orientations.aff2axcodes(affine))


def voxel_sizes(affine: np.ndarray) -> tuple[float, ...]:
    return tuple(float(v) for v in np.sqrt((affine[:3, :3] ** 2).sum(axis=0)))
