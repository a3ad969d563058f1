"""NIfTI-1 / NIfTI-2 (plain or gzipped, detected by content) -> one canonical RAS volume.

Analyze 7.5 and header/image pairs are refused: Analyze has no reliable orientation, and a lone `.hdr`
cannot be paired with its `.img` once uploaded. 4D files return the volume `volume_index` of `n_volumes`.
Intensities are scaled by `scl_slope`/`scl_inter` as nibabel does.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import nibabel as nib
import numpy as np

from kdmed.errors import StudyReadError, UnsupportedStudyError
from kdmed.io.build import volume_study
from kdmed.io.guard import reading
from kdmed.io.header_checks import nifti_header
from kdmed.io.limits import ReadLimits, check_voxels
from kdmed.io.sniff import Kind
from kdmed.io.sources import Item
from kdmed.io.study import SeriesInfo, Study, StudyMetadata

_HINT = "the file may be truncated or corrupt; export it again"


def load_nifti(item: Item, volume_index: int, limits: ReadLimits) -> Study:
    with _opened(item, limits) as (img, shape, spatial, n_volumes):
        if not 0 <= volume_index < n_volumes:
            raise StudyReadError(
                f"{item.name}: volume_index {volume_index} is out of range; this file has {n_volumes} "
                f"volume(s) (0..{n_volumes - 1})"
            )
        with reading(item.name, f"the voxel data of this {item.kind.value} file cannot be read", _HINT):
            data = _read_volume(img, shape, volume_index)
    affine, warnings = _affine(item.name, img)
    meta = StudyMetadata(
        source_kind="nifti",
        series_description=_description(img),
        n_volumes=n_volumes,
        volume_index=volume_index,
        warnings=tuple(warnings),
    )
    study = volume_study(item.name, data.reshape(spatial), affine, meta, input_shape=_input_shape(shape))
    return replace(study, series=(_info(img, spatial, n_volumes),))


def nifti_info(item: Item, limits: ReadLimits) -> SeriesInfo:
    """The file described as one series, from its header alone (no voxel data is read)."""
    with _opened(item, limits) as (img, _, spatial, n_volumes):
        _affine(item.name, img)
        return _info(img, spatial, n_volumes)


@contextlib.contextmanager
def _opened(
    item: Item, limits: ReadLimits
) -> Iterator[tuple[Any, tuple[int, ...], tuple[int, int, int], int]]:
    """(image, header shape, spatial shape, number of volumes), checked; voxels stay unread on the open
    stream until the caller reads them."""
    _refuse_other_formats(item)
    nifti_header(item.name, item.head(540), limits)  # dims, offsets, quaternion, sform: before nibabel
    klass = nib.Nifti2Image if item.kind is Kind.NIFTI2 else nib.Nifti1Image
    with contextlib.ExitStack() as stack:
        stream: Any = item.stream()
        if isinstance(stream, str):
            stream = stack.enter_context(open(stream, "rb"))
        with reading(item.name, f"not a readable {item.kind.value} file", _HINT):
            img = klass.from_stream(stream)
            shape = tuple(int(s) for s in img.shape)
        spatial, n_volumes = _volume_layout(item.name, shape)
        check_voxels(item.name, spatial, limits)
        _check_dtype(item.name, img.get_data_dtype())
        yield img, shape, spatial, n_volumes


def _input_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """The file's own spatial array shape: (X, Y, Z), or (X, Y) for a 2D file (read as (X, Y, 1))."""
    return shape[:3] if len(shape) >= 3 else shape


def _description(img: Any) -> str | None:
    descrip = img.header.get("descrip")
    description = descrip.item().decode("latin-1", "replace").strip("\x00 ") if descrip is not None else ""
    return description or None


def _info(img: Any, spatial: tuple[int, int, int], n_volumes: int) -> SeriesInfo:
    """Rows, columns and slices as stored in the file (X, Y, Z), before any reorientation."""
    return SeriesInfo(
        uid=None,
        number=None,
        description=_description(img),
        modality=None,
        n_files=1,
        n_slices=spatial[2],
        n_volumes=n_volumes,
        orientation=None,
        is_localizer=False,
        rows=spatial[0],
        columns=spatial[1],
    )


def _refuse_other_formats(item: Item) -> None:
    if item.kind is Kind.ANALYZE:
        raise UnsupportedStudyError(
            f"{item.name}: this is an Analyze 7.5 header (no NIfTI magic): Analyze has no reliable "
            "left/right orientation and its voxels live in a separate .img file. Convert it to a "
            "single-file NIfTI (.nii or .nii.gz) with known orientation, e.g. with nibabel or FSL, then "
            "load that"
        )
    if item.kind is Kind.NIFTI1_PAIR:
        raise UnsupportedStudyError(
            f"{item.name}: this is the header of a NIfTI .hdr/.img pair; kdmed reads single-file NIfTI only. "
            "Convert the pair to .nii.gz (e.g. nibabel.save(nibabel.load('x.hdr'), 'x.nii.gz'))"
        )


def _volume_layout(name: str, shape: tuple[int, ...]) -> tuple[tuple[int, int, int], int]:
    """Spatial shape and number of volumes; refuses 5D+ data (vectors, tensors, multi-echo x time)."""
    if any(s <= 0 for s in shape):
        raise StudyReadError(f"{name}: the header declares an empty image of shape {shape}; export it again")
    dims = list(shape)
    while len(dims) > 4 and dims[-1] == 1:
        dims.pop()
    if len(dims) > 4:
        raise UnsupportedStudyError(
            f"{name}: {len(shape)}D data of shape {shape} (vector, tensor or multi-dimensional series) is "
            "not supported; kdmed reads 3D volumes and 4D time series. Extract one 3D volume first"
        )
    if len(dims) < 2:
        raise UnsupportedStudyError(
            f"{name}: 1D data of shape {shape} is not an image; kdmed reads 2D/3D volumes and 4D time series"
        )
    if len(dims) == 2:
        return (dims[0], dims[1], 1), 1
    if len(dims) == 3:
        return (dims[0], dims[1], dims[2]), 1
    return (dims[0], dims[1], dims[2]), dims[3]


def _check_dtype(name: str, dtype: np.dtype) -> None:
    if dtype.fields is not None or np.issubdtype(dtype, np.complexfloating):
        raise UnsupportedStudyError(
            f"{name}: voxel type {dtype} (RGB or complex) is not supported; kdmed reads scalar intensities. "
            "Convert to a grey-level or magnitude image first"
        )


def _read_volume(img: Any, shape: tuple[int, ...], volume_index: int) -> np.ndarray:
    proxy = img.dataobj
    if len(shape) <= 3:
        data = np.asanyarray(proxy)
    else:
        index = (slice(None), slice(None), slice(None), volume_index) + (0,) * (len(shape) - 4)
        data = np.asanyarray(proxy[index])
    return np.asarray(data, dtype=np.float32)


def _affine(name: str, img: Any) -> tuple[np.ndarray, list[str]]:
    warnings: list[str] = []
    header = img.header
    _, sform_code = header.get_sform(coded=True)
    _, qform_code = header.get_qform(coded=True)
    if not sform_code and not qform_code:
        warnings.append(
            "the NIfTI header has no orientation (sform and qform codes are 0): the affine only scales by "
            "the voxel sizes, so left/right may be wrong"
        )
    affine = np.asarray(img.affine, dtype=np.float64)
    if not np.isfinite(affine).all() or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise StudyReadError(
            f"{name}: the header's affine is degenerate (zero or non-finite voxel sizes); fix pixdim/sform "
            "and export again"
        )
    return affine, warnings
