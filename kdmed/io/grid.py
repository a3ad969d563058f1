"""The input's own voxel grid, kept with a `Study` so that results can be written back onto it.

`Study.array` is reoriented to closest canonical RAS (see `orientation`); `InputGrid` records the array the
source itself stores (a NIfTI's spatial data shape; for DICOM the series' column, row and slice in position
order, as `kdmed.io` stacks it) and the axis permutation/flips mapping one onto the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from nibabel import orientations

_RAS = np.array([[0, 1], [1, 1], [2, 1]])


@dataclass(frozen=True, eq=False)
class InputGrid:
    """How the canonical RAS study maps onto the input's voxel array (no identifying fields)."""

    shape: tuple[int, ...]  # input spatial shape; a 2D NIfTI keeps its (X, Y), read as (X, Y, 1)
    affine: np.ndarray  # input voxel -> RAS mm (before reorientation)
    to_input: np.ndarray  # nibabel orientation: canonical array -> input array
    instance_numbers: tuple[int, ...] | None = None  # DICOM: InstanceNumber of each input slice (axis 2)

    @classmethod
    def from_affine(
        cls, shape: tuple[int, ...], affine: np.ndarray, instance_numbers: tuple[int, ...] | None = None
    ) -> InputGrid:
        """The grid of an input array of `shape` whose voxels map to RAS mm by `affine`."""
        affine = np.array(affine, dtype=np.float64)  # a copy: Study.affine may be the same array
        to_input = orientations.ornt_transform(_RAS, orientations.io_orientation(affine))
        numbers = None if instance_numbers is None else tuple(int(n) for n in instance_numbers)
        return cls(tuple(int(s) for s in shape), affine, to_input, numbers)

    @property
    def orientation(self) -> str:
        """Axis codes of the input array, e.g. 'LPS' for a DICOM axial series."""
        return "".join(orientations.aff2axcodes(self.affine))

    @property
    def canonical_shape(self) -> tuple[int, int, int]:
        """The shape the canonical RAS array of this input has."""
        padded = tuple(self.shape) + (1,) * (3 - len(self.shape))
        out = [0, 0, 0]
        for axis, (target, _flip) in enumerate(self.to_input):
            out[axis] = padded[int(target)]
        return (out[0], out[1], out[2])

    def array(self, canonical: np.ndarray) -> np.ndarray:
        """`canonical` (an array on the study's RAS grid) laid out on the input's grid."""
        return np.ascontiguousarray(orientations.apply_orientation(canonical, self.to_input)).reshape(
            self.shape
        )

    def index(self, axis: int, k: int, n: int) -> tuple[int, int]:
        """(input axis, input index) of canonical slice `k` of `n` along canonical `axis`."""
        target, flip = self.to_input[axis]
        return int(target), k if flip > 0 else n - 1 - k

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable view."""
        return {
            "shape": list(self.shape),
            "orientation": self.orientation,
            "affine": [[float(v) for v in row] for row in self.affine],
            "instance_numbers": list(self.instance_numbers) if self.instance_numbers is not None else None,
        }
