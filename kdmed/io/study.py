"""What `load_study` returns: the voxel array, its geometry and metadata, with identifying fields set apart.

Conventions
- Volumes (NIfTI, DICOM with patient geometry): `array` is float32 `(X, Y, Z)`, reoriented to the closest
  canonical RAS orientation (as `nibabel.as_closest_canonical`), `affine` maps voxel indices to RAS mm and
  agrees with that array, `spacing` is `(sx, sy, sz)` in mm and `metadata.orientation` is `('R', 'A', 'S')`.
- 2D images (png, jpg, bmp, tif, and DICOM without patient geometry such as CR, US, secondary captures):
  `array` is `(H, W)` grey or `(H, W, 3)` RGB in the stored row/column order; `affine` maps
  `(row, col, 0)` to mm in the image plane (pixel spacing if known, else 1), `spacing` is `(row, col)`,
  and `metadata.orientation` is None.
- `grid` (volumes only) is the input's own voxel grid: its shape, original affine and the reorientation
  back onto it (see `kdmed.io.grid`). `series` lists every series found in the source (DICOM, sorted as
  `list_series` sorts them) or one entry for the NIfTI file / image, so callers need not read it again.
- `metadata.phi` holds identifying fields (patient name, id, birth date, institution, dates). It is left out
  of `repr`, `str`, equality and `to_dict()` unless asked for, so logging a Study never leaks it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

from kdmed.io.grid import InputGrid

SourceKind = Literal["nifti", "dicom", "image"]


@dataclass(frozen=True)
class StudyMetadata:
    """What was read and how. `photometric` is the source's PhotometricInterpretation (colour sources,
    converted to RGB, say "RGB"); `window_center/width` are in the array's units (after rescale, mirrored
    for MONOCHROME1); `n_volumes`/`volume_index` count time points (or frames/pages without slice geometry);
    `warnings` say what was dropped, chosen or assumed; `phi` holds identifying fields, never printed."""

    source_kind: SourceKind
    modality: str | None = None
    series_description: str | None = None
    series_uid: str | None = None
    series_number: int | None = None
    n_volumes: int = 1
    volume_index: int = 0
    window_center: float | None = None
    window_width: float | None = None
    photometric: str | None = None
    orientation: tuple[str, ...] | None = None
    warnings: tuple[str, ...] = ()
    phi: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

    def to_dict(self, *, include_phi: bool = False) -> dict[str, Any]:
        """JSON-serialisable view; identifying fields only when `include_phi` is True."""
        out = asdict(self)
        out.pop("phi")
        out["orientation"] = list(self.orientation) if self.orientation else None
        out["warnings"] = list(self.warnings)
        if include_phi:
            out["phi"] = dict(self.phi)
        return out


@dataclass(frozen=True, eq=False)
class Study:
    """One volume (or 2D image) ready for display and scoring. Treat `array` as read-only."""

    array: np.ndarray
    affine: np.ndarray
    spacing: tuple[float, ...]
    metadata: StudyMetadata
    grid: InputGrid | None = None  # volumes only: the input's voxel grid
    series: tuple[SeriesInfo, ...] = ()  # every series in the source (no identifying fields)

    @property
    def is_volume(self) -> bool:
        """True for `(X, Y, Z)` volumes in RAS; False for 2D images (grey or RGB)."""
        return self.metadata.orientation is not None

    def __repr__(self) -> str:
        m = self.metadata
        return (
            f"Study(kind={m.source_kind!r}, shape={tuple(self.array.shape)}, "
            f"spacing={tuple(round(s, 4) for s in self.spacing)}, orientation={m.orientation}, "
            f"modality={m.modality!r}, volume={m.volume_index + 1}/{m.n_volumes}, "
            f"series={len(self.series)}, warnings={len(m.warnings)})"
        )

    __str__ = __repr__


@dataclass(frozen=True)
class SeriesInfo:
    """One DICOM series found in a source (or the single NIfTI / image it holds)."""

    uid: str | None
    number: int | None
    description: str | None
    modality: str | None
    n_files: int
    n_slices: int
    n_volumes: int
    orientation: str | None  # 'axial' | 'sagittal' | 'coronal' | 'oblique' | None (no patient geometry)
    is_localizer: bool
    rows: int | None = None
    columns: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
