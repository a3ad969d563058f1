"""Tell what a file is from its first bytes, never from its name (uploads lose `.nii.gz`, DICOM has none)."""

from __future__ import annotations

import struct
from enum import StrEnum

HEAD_BYTES = 1024

_EXPLICIT_VRS = {
    b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FL", b"FD", b"IS", b"LO", b"LT", b"OB", b"OD", b"OF",
    b"OL", b"OV", b"OW", b"PN", b"SH", b"SL", b"SQ", b"SS", b"ST", b"SV", b"TM", b"UC", b"UI", b"UL", b"UN",
    b"UR", b"US", b"UT", b"UV",
}  # fmt: skip


class Kind(StrEnum):
    DICOM = "DICOM"  # Part 10 file: 128-byte preamble + 'DICM'
    DICOM_RAW = "DICOM data set without preamble or File Meta header"
    NIFTI1 = "NIfTI-1"
    NIFTI1_PAIR = "NIfTI-1 header of a .hdr/.img pair"
    NIFTI2 = "NIfTI-2"
    ANALYZE = "Analyze 7.5"
    GZIP = "gzip"
    ZIP = "zip"
    PNG = "PNG"
    JPEG = "JPEG"
    BMP = "BMP"
    TIFF = "TIFF"
    EMPTY = "empty file"
    UNKNOWN = "unknown"


IMAGE_KINDS = frozenset({Kind.PNG, Kind.JPEG, Kind.BMP, Kind.TIFF})
NIFTI_KINDS = frozenset({Kind.NIFTI1, Kind.NIFTI1_PAIR, Kind.NIFTI2, Kind.ANALYZE})
DICOM_KINDS = frozenset({Kind.DICOM, Kind.DICOM_RAW})
SUPPORTED = "DICOM, NIfTI (.nii, .nii.gz), PNG, JPEG, BMP, TIFF, or a zip of DICOM files"


def sniff(head: bytes) -> Kind:
    """Classify a file from its first `HEAD_BYTES` bytes (fewer if the file is shorter)."""
    if not head:
        return Kind.EMPTY
    if len(head) >= 132 and head[128:132] == b"DICM":
        return Kind.DICOM
    if head[:2] == b"\x1f\x8b":
        return Kind.GZIP
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return Kind.ZIP
    nifti = _nifti_kind(head)
    if nifti is not None:
        return nifti
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return Kind.PNG
    if head[:3] == b"\xff\xd8\xff":
        return Kind.JPEG
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return Kind.TIFF
    if (
        head[:2] == b"BM"
        and len(head) >= 18
        and struct.unpack("<I", head[14:18])[0] in (12, 40, 52, 56, 64, 108, 124)
    ):
        return Kind.BMP
    if raw_dicom_offset(head) == 0:
        return Kind.DICOM_RAW
    return Kind.UNKNOWN


def _nifti_kind(head: bytes) -> Kind | None:
    if len(head) < 348:
        return None
    for endian in "<>":
        size = struct.unpack(f"{endian}i", head[:4])[0]
        if size == 348:
            magic = head[344:348]
            if magic == b"n+1\x00":
                return Kind.NIFTI1
            if magic == b"ni1\x00":
                return Kind.NIFTI1_PAIR
            return Kind.ANALYZE
        if size == 540 and len(head) >= 12 and head[4:8] == b"n+2\x00":
            return Kind.NIFTI2
    return None


def raw_dicom_offset(head: bytes, max_offset: int = 3) -> int | None:
    """Offset at which a DICOM data set without preamble seems to start (0 = well formed), else None.

    A data set written without File Meta header starts with a little-endian element of group 0x0002 or
    0x0008 (the lowest groups a stored image has), followed either by an explicit VR or by a 4-byte length.
    Offsets above 0 only serve to explain a broken file (stray leading bytes) in an error message.
    """
    for offset in range(max_offset + 1):
        chunk = head[offset : offset + 8]
        if len(chunk) < 8:
            return None
        group, element = struct.unpack("<HH", chunk[:4])
        if group not in (0x0002, 0x0008) or element > 0x1000:
            continue
        if chunk[4:6] in _EXPLICIT_VRS:
            return offset
        length = struct.unpack("<I", chunk[4:8])[0]
        if offset == 0 and length < 1024 and group == 0x0008:
            return offset
    return None
