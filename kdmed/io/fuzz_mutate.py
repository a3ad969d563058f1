"""Mutations of a valid file into a hostile one, as a fuzzer applies them: byte flips in the header and the
body, truncations, and extreme values written into the header fields that readers trust (sizes, bit
depths, geometry, transfer syntax, NIfTI dims and quaternions, PNG/JPEG/BMP dimensions).

Every mutation is a pure function of the seed bytes and a numpy Generator, so a (seed, case number) pair
always gives the same file. `mutate` returns (label, bytes); the label names what was changed, for the
fuzz table and for reproducers.
"""

from __future__ import annotations

import gzip
import io
import struct
import warnings
import zlib
from collections.abc import Callable

import nibabel as nib
import numpy as np
import pydicom
from pydicom import config as dicom_config

from kdmed.io.fuzz_seeds import Seed

Mutation = tuple[str, bytes]

_HEADER_BYTES = 1024
# (keyword, values): pydicom writes strings for IS/DS/UI and integers for US
_DICOM_EXTREMES: dict[str, list] = {
    "NumberOfFrames": ["2147483647", "0", "-1", "100000", "65536", "3"],
    "Rows": [0, 1, 2, 32768, 65535],
    "Columns": [0, 1, 3, 32768, 65535],
    "BitsAllocated": [0, 1, 7, 12, 24, 32, 64, 65535],
    "BitsStored": [0, 1, 33, 65535],
    "HighBit": [0, 40, 65535],
    "SamplesPerPixel": [0, 2, 3, 4, 65535],
    "PixelRepresentation": [1, 2, 65535],
    "PlanarConfiguration": [1, 7],
    "PhotometricInterpretation": ["YBR_FULL_422", "YBR_FULL", "PALETTE COLOR", "MONOCHROME1", "RGB", "XYZ", ""],
    "PixelSpacing": [["1e-300", "1e-300"], ["0", "0"], ["nan", "1"], ["1e308", "1e308"], ["-1", "-1"], ["1"]],
    "ImageOrientationPatient": [
        ["1e308"] * 6, ["0"] * 6, ["nan"] * 6, ["1", "0", "0", "1", "0", "0"], ["1", "0", "0", "0", "1"],
        ["inf", "0", "0", "0", "1", "0"], ["1e-300", "0", "0", "0", "1e-300", "0"],
    ],
    "ImagePositionPatient": [["1e308"] * 3, ["nan"] * 3, ["-inf", "0", "0"], ["1"]],
    "SliceThickness": ["0", "-1", "1e308", "nan"],
    "SpacingBetweenSlices": ["0", "-1e308", "nan"],
    "RescaleSlope": ["0", "nan", "inf", "1e308", "-1e308"],
    "RescaleIntercept": ["nan", "1e308", "-inf"],
    "WindowCenter": ["nan", "1e308"],
    "WindowWidth": ["0", "-1", "inf"],
    "InstanceNumber": ["2147483648", "-99999999999"],
    "SOPClassUID": ["1.2.3.4", "1.2.840.10008.5.1.4.1.1.66.4", "1.2.840.10008.1.3.10", ""],
}  # fmt: skip
_TRANSFER_SYNTAXES = [
    "1.2.3.4.5", "not-a-uid", "", "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.5",
    "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2",
    "1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.100",
]  # fmt: skip
_DICOM_REMOVABLE = [
    "Rows", "Columns", "BitsAllocated", "BitsStored", "PixelRepresentation", "SamplesPerPixel",
    "PhotometricInterpretation", "PixelData", "PixelSpacing", "ImageOrientationPatient", "NumberOfFrames",
]  # fmt: skip

_NIFTI_EXTREMES: dict[str, list[float]] = {
    "dim": [0, -1, 1, 2, 5, 7, 8, 32767, -32768, 1000],
    "pixdim": [0.0, -1.0, float("nan"), float("inf"), 1e38, 1e-30],
    "datatype": [0, 1, 2, 4, 8, 16, 32, 64, 128, 255, 256, 512, 768, 1024, 1280, 1536, 1792, 2048, 2304, 9999],
    "bitpix": [0, 1, 7, 64, 255],
    "vox_offset": [0.0, 1e20, -1.0, float("nan"), 7.0, 1e9],
    "scl_slope": [0.0, float("nan"), float("inf"), -1e38],
    "scl_inter": [float("nan"), float("inf"), 1e38],
    "quatern_b": [5.0, -5.0, float("nan"), float("inf"), 1.0],
    "quatern_c": [5.0, float("nan"), 1e38],
    "quatern_d": [5.0, -1.0, float("nan")],
    "qoffset_x": [1e38, float("nan"), float("inf")],
    "srow_x": [1e38, float("nan"), 0.0, float("inf")],
    "srow_y": [1e38, float("nan"), 0.0],
    "srow_z": [1e38, float("nan"), 0.0],
    "qform_code": [0, 1, 2, 5, 99, -1],
    "sform_code": [0, 1, 4, 99, -1],
    "xyzt_units": [255, 0],
    "dim_info": [255],
}  # fmt: skip
_PNG_SIZES = [0, 1, 65535, 65536, 100000, 1 << 20, 2**31 - 1]
_BIG_SIZES = [0, 1, 65535, 65536, 100000, 1 << 20, 2**31 - 1, 2**32 - 1]


def _pick(rng: np.random.Generator, values: list):
    return values[int(rng.integers(len(values)))]


def flip_header(data: bytes, rng: np.random.Generator) -> Mutation:
    out = bytearray(data)
    n = int(rng.integers(1, 9))
    end = min(len(out), _HEADER_BYTES)
    for _ in range(n):
        out[int(rng.integers(end))] = int(rng.integers(256))
    return f"flip_header x{n}", bytes(out)


def flip_body(data: bytes, rng: np.random.Generator) -> Mutation:
    out = bytearray(data)
    n = int(rng.integers(1, 33))
    for _ in range(n):
        out[int(rng.integers(len(out)))] = int(rng.integers(256))
    return f"flip_body x{n}", bytes(out)


def truncate(data: bytes, rng: np.random.Generator) -> Mutation:
    at = int(rng.integers(1, max(2, len(data))))
    return f"truncate at {at}", data[:at]


def overwrite_run(data: bytes, rng: np.random.Generator) -> Mutation:
    """A run of 0x00 or 0xFF bytes (a length or tag wiped to its extreme)."""
    out = bytearray(data)
    start = int(rng.integers(len(out)))
    length = int(rng.integers(1, 9))
    fill = _pick(rng, [0x00, 0xFF])
    out[start : start + length] = bytes([fill]) * len(out[start : start + length])
    return f"run {fill:#04x} x{length} at {start}", bytes(out)


def _dicom_write(ds: pydicom.Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=False)
    return buffer.getvalue()


def dicom_extreme(data: bytes, rng: np.random.Generator) -> Mutation | None:
    """One header element set to an extreme value, removed, or the transfer syntax replaced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        saved = dicom_config.settings.writing_validation_mode, dicom_config.settings.reading_validation_mode
        dicom_config.settings.writing_validation_mode = dicom_config.IGNORE
        dicom_config.settings.reading_validation_mode = dicom_config.IGNORE
        try:
            ds = pydicom.dcmread(io.BytesIO(data), force=True)
            choice = int(rng.integers(10))
            if choice == 0:
                value = _pick(rng, _TRANSFER_SYNTAXES)
                ds.file_meta.TransferSyntaxUID = value
                label = f"TransferSyntaxUID={value!r}"
                # keep the body encoded as before: write the meta with the old encoding's data set
                body = _dicom_write_keeping_body(data, ds)
                return label, body
            if choice == 1:
                keyword = _pick(rng, _DICOM_REMOVABLE)
                if keyword in ds:
                    del ds[keyword]
                label = f"delete {keyword}"
            else:
                keyword = _pick(rng, list(_DICOM_EXTREMES))
                value = _pick(rng, _DICOM_EXTREMES[keyword])
                setattr(ds, keyword, value)
                label = f"{keyword}={value!r}"
            return label, _dicom_write(ds)
        except Exception:  # a value pydicom itself cannot write: the caller draws another mutation
            return None
        finally:
            dicom_config.settings.writing_validation_mode, dicom_config.settings.reading_validation_mode = (
                saved
            )


def _dicom_write_keeping_body(data: bytes, ds: pydicom.Dataset) -> bytes:
    """The original bytes with only the TransferSyntaxUID value in the File Meta group replaced."""
    old = ds.file_meta.get("TransferSyntaxUID")
    original = pydicom.dcmread(io.BytesIO(data), force=True, stop_before_pixels=True)
    before = str(original.file_meta.get("TransferSyntaxUID", ""))
    if not before:
        return data
    encoded = before.encode("ascii")
    if len(encoded) % 2:
        encoded += b"\x00"
    at = data.find(encoded)
    if at < 0:
        return data
    new = str(old).encode("ascii", "replace")
    if len(new) % 2:
        new += b"\x00"
    # the element length (2 bytes before the value, explicit VR little endian in the meta group)
    length = struct.pack("<H", len(new))
    return data[: at - 2] + length + new + data[at + len(encoded) :]


def _nifti_parts(data: bytes) -> tuple[bool, bytes]:
    try:
        return True, gzip.decompress(data)
    except (OSError, EOFError, zlib.error):
        return False, data


def nifti_extreme(data: bytes, rng: np.random.Generator) -> Mutation | None:
    """One NIfTI-1/2 header field (or one element of an array field) set to an extreme value."""
    gz, raw = _nifti_parts(data)
    if len(raw) < 540:
        return None
    version2 = struct.unpack("<i", raw[:4])[0] == 540
    klass, size = (nib.Nifti2Header, 540) if version2 else (nib.Nifti1Header, 348)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        header = klass(binaryblock=raw[:size], check=False)
        field = _pick(rng, list(_NIFTI_EXTREMES))
        value = _pick(rng, _NIFTI_EXTREMES[field])
        array = header._structarr  # the raw fields, written without nibabel's checks on purpose
        try:
            if array[field].shape:
                index = int(rng.integers(array[field].shape[0]))
                array[field][index] = value
                label = f"{field}[{index}]={value!r}"
            else:
                array[field] = value
                label = f"{field}={value!r}"
        except (OverflowError, ValueError):  # not representable in this header version's field type
            return None
        out = header.binaryblock + raw[size:]
    return label, (gzip.compress(out, mtime=0) if gz else out)


def nifti_body(data: bytes, rng: np.random.Generator) -> Mutation:
    """Byte flips or a truncation inside the gunzipped stream, then gzipped again (gets past the CRC)."""
    gz, raw = _nifti_parts(data)
    label, out = (flip_header if rng.integers(2) else truncate)(raw, rng)
    return f"inner {label}", (gzip.compress(out, mtime=0) if gz else out)


def _png_with_ihdr(
    data: bytes, width: int, height: int, depth: int | None, colour: int | None
) -> bytes | None:
    if not data.startswith(b"\x89PNG\r\n\x1a\n") or data[12:16] != b"IHDR":
        return None
    body = bytearray(data[16:29])
    body[0:4], body[4:8] = struct.pack(">I", width), struct.pack(">I", height)
    if depth is not None:
        body[8] = depth
    if colour is not None:
        body[9] = colour
    crc = struct.pack(">I", zlib.crc32(b"IHDR" + bytes(body)) & 0xFFFFFFFF)
    return data[:16] + bytes(body) + crc + data[33:]


def _jpeg_with_size(data: bytes, width: int, height: int) -> bytes | None:
    for marker in (b"\xff\xc0", b"\xff\xc1", b"\xff\xc2"):
        at = data.find(marker)
        if at > 0:
            out = bytearray(data)
            out[at + 5 : at + 7] = struct.pack(">H", min(height, 65535))
            out[at + 7 : at + 9] = struct.pack(">H", min(width, 65535))
            return bytes(out)
    return None


def image_extreme(data: bytes, rng: np.random.Generator) -> Mutation | None:
    """Declared width/height (and PNG bit depth / colour type) set to extremes, with a valid IHDR CRC."""
    width, height = _pick(rng, _PNG_SIZES), _pick(rng, _PNG_SIZES)
    if data.startswith(b"\x89PNG"):
        depth = _pick(rng, [None, 1, 3, 8, 16, 32])
        colour = _pick(rng, [None, 0, 2, 3, 4, 6, 7])
        out = _png_with_ihdr(data, width, height, depth, colour)
        return (f"PNG IHDR {width}x{height} depth={depth} colour={colour}", out) if out else None
    if data.startswith(b"\xff\xd8"):
        out = _jpeg_with_size(data, width, height)
        return (f"JPEG SOF {width}x{height}", out) if out else None
    if data.startswith(b"BM") and len(data) > 30:
        width, height = _pick(rng, _BIG_SIZES), _pick(rng, _BIG_SIZES)
        out = data[:18] + struct.pack("<II", width, height) + data[26:]
        return f"BMP {width}x{height}", out
    return None


_GENERIC: list[Callable[[bytes, np.random.Generator], Mutation]] = [
    flip_header,
    flip_body,
    truncate,
    overwrite_run,
]
_STRUCTURED: dict[str, list[Callable[[bytes, np.random.Generator], Mutation | None]]] = {
    "dicom": [dicom_extreme, dicom_extreme],
    "nifti": [nifti_extreme, nifti_extreme, nifti_body],
    "image": [image_extreme],
}


def mutate(seed: Seed, rng: np.random.Generator) -> Mutation:
    """One mutation of `seed`: half generic byte-level, half aware of the format's header (when it applies)."""
    for _ in range(8):
        if rng.random() < 0.5:
            result = _pick(rng, _STRUCTURED[seed.family])(seed.data, rng)
            if result is not None:
                return result
        else:
            return _pick(rng, _GENERIC)(seed.data, rng)
    return truncate(seed.data, rng)
