"""Checks on declared sizes and geometry, run on the header before any buffer, frame or decoder exists.

A hostile or damaged header can declare 2,147,483,647 frames, 64-bit samples, orientation cosines of 1e308
or pixel spacings of 1e-300. Readers that trust those values allocate, loop or run linear algebra on them;
these checks refuse each one first, with a `StudyReadError` that names the field, its value and the fix.
DICOM fields follow PS3.3 C.7.6.3 (Image Pixel) and C.7.6.2 (Image Plane); NIfTI fields the NIfTI-1/2
headers (nifti1.h, nifti2.h).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from typing import Any

from pydicom.encaps import parse_fragments

from kdmed.errors import StudyReadError, UnsupportedStudyError
from kdmed.io.limits import ReadLimits, check_voxels

MIN_SPACING_MM = 1e-4  # 0.1 micrometre: below any microscope's or scanner's sampling
MAX_SPACING_MM = 1e4  # 10 m
MAX_POSITION_MM = 1e6  # 1 km from the scanner's origin
MAX_RESCALE = 1e12
_BITS_ALLOCATED = (1, 8, 16, 32, 64)
_FIX = "the header is damaged: export the study again from the scanner or PACS"


def _refuse(name: str, field: str, value: Any, why: str) -> None:
    raise StudyReadError(f"{name}: {field} = {value!r} {why}; {_FIX}")


def _integer(name: str, field: str, value: Any) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        value = value[0] if len(value) else None
        if value is None:
            return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        _refuse(name, field, value, "is not a number")
    if not math.isfinite(number) or number != int(number):
        _refuse(name, field, value, "is not a whole number")
    return int(number)


def dicom_pixel_module(name: str, ds: Any, limits: ReadLimits) -> None:
    """Rows, Columns, NumberOfFrames, SamplesPerPixel and the bit depths are sane, and the declared image
    fits `limits`, before any Frame is built or pixel decoded."""
    rows, columns = _integer(name, "Rows", ds.get("Rows")), _integer(name, "Columns", ds.get("Columns"))
    for field, value in (("Rows", rows), ("Columns", columns)):
        if value is not None and not 1 <= value <= 65535:
            _refuse(name, field, value, "is outside 1..65535")
    frames = _integer(name, "NumberOfFrames", ds.get("NumberOfFrames"))
    if frames is not None and frames < 0:
        _refuse(name, "NumberOfFrames", frames, "is negative")
    frames = frames or 1
    if frames > limits.max_frames:
        _refuse(name, "NumberOfFrames", frames, f"is over the limit of {limits.max_frames:,} frames per file "
                "(ReadLimits.max_frames; pass a larger limit if this file is trusted)")  # fmt: skip
    samples = _integer(name, "SamplesPerPixel", ds.get("SamplesPerPixel")) or 1
    if samples not in (1, 3):
        _refuse(name, "SamplesPerPixel", samples, "is not 1 (grey) or 3 (colour)")
    if rows and columns:
        check_voxels(name, (frames, rows, columns, samples), limits)
    allocated = _integer(name, "BitsAllocated", ds.get("BitsAllocated"))
    if allocated is not None and allocated not in _BITS_ALLOCATED:
        _refuse(name, "BitsAllocated", allocated, f"is not one of {_BITS_ALLOCATED}")
    stored = _integer(name, "BitsStored", ds.get("BitsStored"))
    if stored is not None and allocated is not None and not 1 <= stored <= allocated:
        _refuse(name, "BitsStored", stored, f"is outside 1..BitsAllocated ({allocated})")
    high = _integer(name, "HighBit", ds.get("HighBit"))
    if high is not None and allocated is not None and not 0 <= high < allocated:
        _refuse(name, "HighBit", high, f"is outside 0..BitsAllocated - 1 ({allocated - 1})")
    representation = _integer(name, "PixelRepresentation", ds.get("PixelRepresentation"))
    if representation not in (None, 0, 1):
        _refuse(name, "PixelRepresentation", representation, "is not 0 (unsigned) or 1 (signed)")
    planar = _integer(name, "PlanarConfiguration", ds.get("PlanarConfiguration"))
    if samples == 3 and planar not in (None, 0, 1):
        _refuse(name, "PlanarConfiguration", planar, "is not 0 or 1")


def dicom_pixel_data(name: str, ds: Any, compressed: bool) -> None:
    """The pixel data holds what the header declares: enough bytes for native data, at least one fragment
    per frame for encapsulated data. Run after the full read, before any decoder sees the data."""
    data = ds.get("PixelData")
    if data is None:
        return
    missing = [k for k in ("BitsAllocated", "PixelRepresentation") if ds.get(k) in (None, "")]
    if missing:
        raise StudyReadError(
            f"{name}: {' and '.join(missing)} missing from the Image Pixel module, so the stored values "
            f"cannot be interpreted; {_FIX}"
        )
    frames = _integer(name, "NumberOfFrames", ds.get("NumberOfFrames")) or 1
    if compressed:
        try:
            fragments, _ = parse_fragments(data)
        except (ValueError, TypeError, struct.error) as exc:
            raise StudyReadError(f"{name}: the encapsulated pixel data is malformed ({exc}); {_FIX}") from exc
        if fragments < frames:
            _refuse(name, "NumberOfFrames", frames, f"exceeds the {fragments} compressed fragment(s) in the "
                    "pixel data")  # fmt: skip
        return
    rows, columns = int(ds.get("Rows") or 0), int(ds.get("Columns") or 0)
    samples = _integer(name, "SamplesPerPixel", ds.get("SamplesPerPixel")) or 1
    bits = _integer(name, "BitsAllocated", ds.get("BitsAllocated")) or 16
    expected = (frames * rows * columns * samples * bits + 7) // 8
    if len(data) < expected:
        raise StudyReadError(
            f"{name}: the pixel data holds {len(data):,} bytes but the header declares {expected:,} "
            f"({frames} frame(s) of {rows} x {columns} x {samples} samples at {bits} bits): the file is "
            f"truncated or its header is wrong; {_FIX}"
        )


def _numbers(name: str, field: str, value: Any) -> list[float] | None:
    if value is None or value == "":
        return None
    values = list(value) if isinstance(value, Sequence) and not isinstance(value, str | bytes) else [value]
    try:
        numbers = [float(v) for v in values]
    except (TypeError, ValueError):
        _refuse(name, field, list(map(str, values)), "holds a value that is not a number")
    if not all(math.isfinite(v) for v in numbers):
        _refuse(name, field, numbers, "is not finite")
    return numbers


def dicom_plane(name: str, ds: Any, prefix: str = "") -> None:
    """ImageOrientationPatient, ImagePositionPatient, PixelSpacing, slice gaps and the rescale are finite,
    in range and non-degenerate (`ds` is the data set or one functional-group item; `prefix` names it)."""
    iop = _numbers(name, prefix + "ImageOrientationPatient", ds.get("ImageOrientationPatient"))
    if iop is not None and len(iop) == 6:
        row, col = iop[:3], iop[3:]
        norms = [math.sqrt(sum(v * v for v in vector)) for vector in (row, col)]
        if not all(0.5 <= n <= 2.0 for n in norms):
            _refuse(name, prefix + "ImageOrientationPatient", iop, "is not two unit direction cosines")
        cosine = abs(sum(a * b for a, b in zip(row, col, strict=True))) / (norms[0] * norms[1])
        if cosine > 0.01:
            _refuse(name, prefix + "ImageOrientationPatient", iop, "has row and column directions that are "
                    "not perpendicular")  # fmt: skip
    ipp = _numbers(name, prefix + "ImagePositionPatient", ds.get("ImagePositionPatient"))
    if ipp is not None and any(abs(v) > MAX_POSITION_MM for v in ipp):
        _refuse(
            name, prefix + "ImagePositionPatient", ipp, f"is more than {MAX_POSITION_MM:g} mm from the origin"
        )
    for field in ("PixelSpacing", "ImagerPixelSpacing", "SliceThickness", "SpacingBetweenSlices"):
        values = _numbers(name, prefix + field, ds.get(field))
        for v in values or ():
            if v != 0 and not MIN_SPACING_MM <= abs(v) <= MAX_SPACING_MM:
                _refuse(name, prefix + field, values, f"is not a plausible size (expected {MIN_SPACING_MM:g} to "
                        f"{MAX_SPACING_MM:g} mm)")  # fmt: skip
    for field in ("RescaleSlope", "RescaleIntercept"):
        values = _numbers(name, prefix + field, ds.get(field))
        if values and abs(values[0]) > MAX_RESCALE:
            _refuse(name, prefix + field, values[0], f"is beyond +-{MAX_RESCALE:g}")


# NIfTI-1 (348-byte header) and NIfTI-2 (540) field layouts: (offset, struct format)
_NIFTI1 = {
    "dim": (40, "<8h"), "datatype": (70, "<h"), "bitpix": (72, "<h"), "pixdim": (76, "<8f"),
    "vox_offset": (108, "<f"), "scl_slope": (112, "<f"), "scl_inter": (116, "<f"), "qform_code": (252, "<h"),
    "sform_code": (254, "<h"), "quatern": (256, "<3f"), "qoffset": (268, "<3f"), "srow": (280, "<12f"),
}  # fmt: skip
_NIFTI2 = {
    "dim": (16, "<8q"), "datatype": (12, "<h"), "bitpix": (14, "<h"), "pixdim": (104, "<8d"),
    "vox_offset": (168, "<q"), "scl_slope": (176, "<d"), "scl_inter": (184, "<d"), "qform_code": (344, "<i"),
    "sform_code": (348, "<i"), "quatern": (352, "<3d"), "qoffset": (376, "<3d"), "srow": (400, "<12d"),
}  # fmt: skip
# NIfTI datatype code -> bits per voxel (nifti1.h); complex and RGB codes are refused later by the reader
_NIFTI_BITS = {2: 8, 4: 16, 8: 32, 16: 32, 32: 64, 64: 64, 128: 24, 256: 8, 512: 16, 768: 32, 1024: 64,
               1280: 64, 1536: 128, 1792: 128, 2048: 256, 2304: 32}  # fmt: skip


def nifti_header(name: str, header: bytes, limits: ReadLimits) -> None:
    """The raw NIfTI header's dims, datatype, offsets, scaling, quaternion and sform are sane before
    nibabel builds an image or an affine from them. `header` is the first 540 bytes (348 suffice for
    NIfTI-1), gunzipped. Byte order is detected from sizeof_hdr as nibabel does."""
    if len(header) < 348:
        raise StudyReadError(f"{name}: the NIfTI header is truncated ({len(header)} of 348 bytes); {_FIX}")
    little = struct.unpack("<i", header[:4])[0] in (348, 540)
    size = struct.unpack("<i" if little else ">i", header[:4])[0]
    layout = _NIFTI2 if size == 540 else _NIFTI1
    if size == 540 and len(header) < 540:
        raise StudyReadError(f"{name}: the NIfTI-2 header is truncated ({len(header)} of 540 bytes); {_FIX}")

    def read(field: str) -> tuple:
        offset, fmt = layout[field]
        fmt = fmt if little else ">" + fmt[1:]
        return struct.unpack_from(fmt, header, offset)

    dim = read("dim")
    if not 1 <= dim[0] <= 7:
        _refuse(name, "dim[0]", dim[0], "is outside 1..7 (the number of dimensions)")
    shape = dim[1 : 1 + dim[0]]
    if any(s < 1 for s in shape):
        _refuse(name, "dim", list(dim), "declares an empty or negative axis")
    check_voxels(name, tuple(shape[:3]), limits)
    datatype, bitpix = read("datatype")[0], read("bitpix")[0]
    if datatype not in _NIFTI_BITS:
        raise UnsupportedStudyError(
            f"{name}: NIfTI datatype code {datatype} is not a known voxel type (nifti1.h); {_FIX}"
        )
    if bitpix != _NIFTI_BITS[datatype]:
        _refuse(name, "bitpix", bitpix, f"does not match datatype {datatype} ({_NIFTI_BITS[datatype]} bits)")
    pixdim = read("pixdim")
    spatial = pixdim[1 : 1 + min(3, dim[0])]
    if not all(math.isfinite(v) and (v == 0 or MIN_SPACING_MM <= abs(v) <= MAX_SPACING_MM) for v in spatial):
        _refuse(name, "pixdim", [float(v) for v in spatial], f"is not a plausible voxel size (expected "
                f"{MIN_SPACING_MM:g} to {MAX_SPACING_MM:g} mm)")  # fmt: skip
    offset = read("vox_offset")[0]
    if not math.isfinite(offset) or offset < 0 or offset > limits.max_file_bytes:
        _refuse(name, "vox_offset", float(offset), "is not a byte offset inside the file")
    for field in ("scl_slope", "scl_inter"):
        value = read(field)[0]
        if math.isinf(value) or (math.isfinite(value) and abs(value) > MAX_RESCALE):
            _refuse(name, field, float(value), f"is beyond +-{MAX_RESCALE:g}")
    if read("qform_code")[0] > 0:
        b, c, d = read("quatern")
        if not all(math.isfinite(v) for v in (b, c, d)) or b * b + c * c + d * d > 1.0 + 1e-6:
            _refuse(name, "quatern_b/c/d", [float(b), float(c), float(d)], "is not a unit quaternion "
                    "(b^2 + c^2 + d^2 must not exceed 1)")  # fmt: skip
        qoffset = read("qoffset")
        if not all(math.isfinite(v) and abs(v) <= MAX_POSITION_MM for v in qoffset):
            _refuse(name, "qoffset_x/y/z", [float(v) for v in qoffset], f"is not finite or beyond "
                    f"{MAX_POSITION_MM:g} mm")  # fmt: skip
    if read("sform_code")[0] > 0:
        srow = read("srow")
        rows = [srow[0:4], srow[4:8], srow[8:12]]
        if not all(math.isfinite(v) for v in srow):
            _refuse(name, "srow_x/y/z", [float(v) for v in srow], "is not finite")
        if any(abs(r[k]) > MAX_SPACING_MM for r in rows for k in range(3)) or any(
            abs(r[3]) > MAX_POSITION_MM for r in rows
        ):
            _refuse(name, "srow_x/y/z", [float(v) for v in srow], "holds voxel sizes or offsets out of range")
        matrix = [r[:3] for r in rows]
        if abs(_det3(matrix)) < MIN_SPACING_MM**3:
            _refuse(name, "srow_x/y/z", [float(v) for v in srow], "is degenerate (zero volume per voxel)")


def _det3(m: list[tuple[float, ...]]) -> float:
    return (
        m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
        - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
        + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
    )
