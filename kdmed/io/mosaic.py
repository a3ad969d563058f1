"""Siemens mosaic images (ImageType MOSAIC): several slices tiled in one 2D frame.

The CSA image header (private tag 0029,1010, parsed with `nibabel.nicom.csareader`) gives the number of
slices (NumberOfImagesInMosaic) and their normal (SliceNormalVector). Tiles fill a square grid of
ceil(sqrt(n)) tiles per side, row by row, in order along that normal. The header's ImagePositionPatient is
that of the whole mosaic's first pixel; the first slice's true position is shifted by half the difference
between mosaic and tile size along rows and columns (as dcm2niix and nibabel's MosaicWrapper do).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import replace

import numpy as np
from pydicom.dataset import Dataset

from kdmed.errors import UnsupportedStudyError
from kdmed.io.dicom_geometry import slice_normal, unit_cosines
from kdmed.io.dicom_records import DicomFile, Frame

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # nibabel.nicom warns on import that it is experimental
    from nibabel.nicom import csareader


def is_mosaic(ds: Dataset) -> bool:
    return "MOSAIC" in [str(v).upper() for v in (ds.get("ImageType") or [])]


def mosaic_frames(f: DicomFile, ds: Dataset, base: Frame) -> list[Frame]:
    name = f.item.name
    try:
        csa = csareader.get_csa_header(ds, "image")
        n_images = csareader.get_n_mosaic(csa) if csa else None
        normal = csareader.get_slice_normal(csa) if csa else None
    except Exception as exc:  # a damaged private header: refuse rather than guess the layout
        raise UnsupportedStudyError(
            f"{name}: Siemens mosaic whose CSA header cannot be parsed ({exc}); convert it with dcm2niix"
        ) from exc
    if not n_images or n_images < 1:
        raise UnsupportedStudyError(
            f"{name}: Siemens mosaic without NumberOfImagesInMosaic in its CSA header, so its slices cannot "
            "be unpacked; convert the series with dcm2niix and load the NIfTI"
        )
    per_side = math.ceil(math.sqrt(n_images))
    if f.rows % per_side or f.columns % per_side:
        raise UnsupportedStudyError(
            f"{name}: mosaic of {f.rows}x{f.columns} pixels cannot hold {n_images} tiles in a "
            f"{per_side}x{per_side} grid; convert the series with dcm2niix"
        )
    tile_rows, tile_cols = f.rows // per_side, f.columns // per_side
    f.mosaic_tiles = (int(n_images), tile_rows, tile_cols)
    if base.iop is None or base.ipp is None or base.pixel_spacing is None or unit_cosines(base.iop) is None:
        return [replace(base, index=k, iop=None, ipp=None) for k in range(n_images)]
    row, col = unit_cosines(base.iop)  # type: ignore[misc]
    ps_row, ps_col = base.pixel_spacing
    first = (
        base.ipp + row * ps_col * (f.columns - tile_cols) / 2.0 + col * ps_row * (f.rows - tile_rows) / 2.0
    )
    n = np.asarray(normal, dtype=np.float64) if normal is not None else slice_normal(base.iop)
    n = n / np.linalg.norm(n)
    step = base.slice_gap or 1.0
    return [replace(base, index=k, ipp=first + k * step * n) for k in range(n_images)]


def split_tiles(mosaic: np.ndarray, tiles: tuple[int, int, int]) -> np.ndarray:
    """`(rows, cols)` mosaic -> `(n, tile_rows, tile_cols)` slices, in mosaic order."""
    n_images, tile_rows, tile_cols = tiles
    per_side = mosaic.shape[1] // tile_cols
    out = np.empty((n_images, tile_rows, tile_cols), dtype=mosaic.dtype)
    for k in range(n_images):
        r, c = divmod(k, per_side)
        out[k] = mosaic[r * tile_rows : (r + 1) * tile_rows, c * tile_cols : (c + 1) * tile_cols]
    return out
