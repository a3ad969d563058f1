"""Pure geometry of DICOM slices (PS3.3 C.7.6.2.1.1, Image Plane module).

ImageOrientationPatient (IOP) holds the direction cosines of the first row (towards increasing column
index) and of the first column (towards increasing row index) in the LPS patient frame; ImagePositionPatient
(IPP) is the centre of the first transmitted pixel; PixelSpacing is (between rows, between columns).
Slices are ordered by their position along the normal `cross(row, col)`, never by InstanceNumber.
Arrays here are indexed `(i, j, k)` = (column, row, slice), the NIfTI convention for a DICOM stack.
"""

from __future__ import annotations

import numpy as np

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
POSITION_TOLERANCE_MM = 0.01
ORIENTATION_TOLERANCE = 1e-3
# a plane is labelled axial/coronal/sagittal when its normal is within ~20 degrees of that axis
_LABEL_COS = 0.94


def unit_cosines(iop: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(row, col) unit vectors, or None when IOP is degenerate (zero or parallel vectors)."""
    iop = np.asarray(iop, dtype=np.float64).reshape(6)
    row, col = iop[:3], iop[3:]
    nr, nc = np.linalg.norm(row), np.linalg.norm(col)
    if nr < 1e-6 or nc < 1e-6:
        return None
    row, col = row / nr, col / nc
    if abs(float(row @ col)) > 0.01:
        return None
    return row, col


def slice_normal(iop: np.ndarray) -> np.ndarray:
    cos = unit_cosines(iop)
    if cos is None:
        raise ValueError(f"degenerate ImageOrientationPatient {list(iop)}")
    n = np.cross(cos[0], cos[1])
    return n / np.linalg.norm(n)


def same_orientation(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(np.allclose(np.asarray(a, float), np.asarray(b, float), atol=ORIENTATION_TOLERANCE))


def orientation_label(iop: np.ndarray) -> str:
    """'axial', 'coronal', 'sagittal' (normal along S, A, L within ~20 degrees) or 'oblique'."""
    n = np.abs(slice_normal(iop))
    axis = int(np.argmax(n))
    if n[axis] < _LABEL_COS:
        return "oblique"
    return ("sagittal", "coronal", "axial")[axis]


def dominant_axis(iop: np.ndarray) -> str:
    """Like `orientation_label` but without the oblique case: which plane it is closest to."""
    return ("sagittal", "coronal", "axial")[int(np.argmax(np.abs(slice_normal(iop))))]


def lps_affine(
    iop: np.ndarray, ipp_first: np.ndarray, pixel_spacing: tuple[float, float], step: np.ndarray
) -> np.ndarray:
    """Voxel (column i, row j, slice k) -> LPS mm. `step` is the vector from one slice to the next."""
    row, col = unit_cosines(iop)  # type: ignore[misc]
    affine = np.eye(4)
    affine[:3, 0] = row * float(pixel_spacing[1])
    affine[:3, 1] = col * float(pixel_spacing[0])
    affine[:3, 2] = step
    affine[:3, 3] = ipp_first
    return affine


def lps_to_ras(affine: np.ndarray) -> np.ndarray:
    return LPS_TO_RAS @ affine


def cluster_positions(distances: np.ndarray, tol: float = POSITION_TOLERANCE_MM) -> list[list[int]]:
    """Indices grouped by equal position along the normal (within `tol` mm), in increasing position."""
    distances = np.asarray(distances, dtype=np.float64)
    order = np.argsort(distances, kind="stable")
    groups: list[list[int]] = []
    last = None
    for idx in order:
        d = float(distances[idx])
        if last is None or d - last > tol:
            groups.append([int(idx)])
        else:
            groups[-1].append(int(idx))
        last = d
    return groups


def spacing_warnings(distances: np.ndarray) -> list[str]:
    """Warnings for gaps and non-uniform spacing between sorted, distinct slice positions."""
    if len(distances) < 3:
        return []
    diffs = np.diff(np.sort(distances))
    median = float(np.median(diffs))
    tol = max(POSITION_TOLERANCE_MM, 0.01 * median)
    if float(np.max(np.abs(diffs - median))) <= tol:
        return []
    out: list[str] = []
    gaps = np.flatnonzero(diffs > 1.5 * median)
    if len(gaps):
        where = ", ".join(f"{distances[i]:.2f}..{distances[i + 1]:.2f} mm" for i in gaps[:3])
        out.append(
            f"gap in the slice stack: {len(gaps)} place(s) where slices seem missing ({where}); the volume "
            "is distorted along the slice axis: check that every file of the series was included"
        )
    out.append(
        f"non-uniform slice spacing ({diffs.min():.3f} to {diffs.max():.3f} mm, median {median:.3f} mm): the "
        "affine assumes even spacing between the first and last slice"
    )
    return out


def shear_warning(step: np.ndarray, normal: np.ndarray) -> str | None:
    """A warning when slices are offset in-plane (gantry tilt): the affine then carries the shear."""
    length = float(np.linalg.norm(step))
    if length == 0:
        return None
    cos = abs(float(step @ normal)) / length
    if cos < np.cos(np.deg2rad(0.5)):
        angle = float(np.degrees(np.arccos(min(1.0, cos))))
        return (
            f"slices are offset in-plane by {angle:.1f} degrees (gantry tilt or sheared stack): the affine "
            "includes this shear, so voxels are not rectangular boxes"
        )
    return None
